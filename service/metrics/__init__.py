"""Prometheus metrics of the gateway (``GET /metrics``): requests, stages, persons, streams,
errors and readiness. The metric families live in ``families``; the HTTP middleware, the gRPC
interceptor and the stream meter record into them."""
