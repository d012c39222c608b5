"""API keys on gRPC, checked from the call's metadata before its request message is read.

A call to ``PoseService`` without a valid key is answered UNAUTHENTICATED by a handler that
never reads the request (a streaming-request handler that does not iterate), so a caller
without a key cannot make the gateway receive and parse an image of up to the upload limit.
The servicer then charges the call (rate limits, per address) through the same
``AccessControl``: one key check, in ``service.app.access``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.app.access import presented_key
from service.app.context import Services
from service.app.errors import ApiError

from .status import abort


def refusing(exc: ApiError) -> grpc.RpcMethodHandler:
    """A handler that ends the call with ``exc``'s status without reading a message."""

    async def refuse(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        await abort(context, exc)

    return grpc.stream_unary_rpc_method_handler(refuse)


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """``service``: the full name of the service whose calls need a key (health and
    reflection stay open, as ``/healthz`` is)."""

    def __init__(self, services: Services, service: str) -> None:
        self.access, self.prefix = services.access, f"/{service}/"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if self.access.enabled and handler_call_details.method.startswith(self.prefix):
            metadata = dict(handler_call_details.invocation_metadata or ())
            key = presented_key(metadata.get("x-api-key"), metadata.get("authorization"))
            try:
                self.access.identify(key)
            except ApiError as exc:
                return refusing(exc)
        return await continuation(handler_call_details)
