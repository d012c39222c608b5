"""Prometheus metrics of the gateway (``GET /metrics``): requests, stages, persons, streams,
errors and readiness. The metric families live in ``families``; the ASGI middleware, the gRPC
interceptor and ``record`` fill them. Nothing here imports what it measures."""
