"""Clients of a running rtmserve (``grpc``: video streams over the gRPC API)."""
