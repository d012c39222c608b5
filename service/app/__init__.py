"""The application core, transport-free: resolve models, estimate one image, run a video
session, format results, say what went wrong. ``service.http`` and ``service.grpc`` are thin
adapters over it."""
