"""Clients of a running rtmserve: ``Client`` / ``AsyncClient`` (HTTP, with gRPC video streams),
typed results that draw themselves, retries on 429/503; ``grpc``: the stream's frame plumbing."""

from .http import AsyncClient, Client
from .results import PoseResult, RtmserveError
from .retry import NO_RETRY, RetryPolicy

__all__ = ["NO_RETRY", "AsyncClient", "Client", "PoseResult", "RetryPolicy", "RtmserveError"]
