"""The gRPC API (``proto/rtmserve/v1/pose.proto``): server, conversions and client helpers."""
