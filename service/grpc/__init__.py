"""The gRPC adapter (``proto/rtmserve/v1/pose.proto``): servicer, health and conversions over
``service.app``."""
