"""gRPC side: a grpc.aio server interceptor counting and timing every call by method and status
code, and counting API error codes from a trailing-metadata key the servicer sets.

Hand-written: the one interceptor library for grpc.aio (py-async-grpc-prometheus, a single
maintainer) exports fixed ``grpc_server_*`` families with its own buckets and cannot count the
API's error codes, which the dashboards and alerts read next to the HTTP ones.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from .families import GRPC_IN_FLIGHT, GRPC_LATENCY, GRPC_REQUESTS
from .record import observe_error


class _Call:
    """One call's accounting: in flight from creation, recorded once by ``finish``."""

    def __init__(self, method: str, error_key: str) -> None:
        self.method, self.error_key = method, error_key
        self.start = time.perf_counter()
        GRPC_IN_FLIGHT.labels(method).inc()

    def finish(self, context: grpc.aio.ServicerContext, exc: BaseException | None) -> None:
        GRPC_IN_FLIGHT.labels(self.method).dec()
        code = context.code()
        if isinstance(exc, asyncio.CancelledError | GeneratorExit):  # the client went away
            code = grpc.StatusCode.CANCELLED
        elif exc is not None and code is None:  # escaped the servicer: grpc answers UNKNOWN
            code = grpc.StatusCode.UNKNOWN
            observe_error("grpc", "internal")
        name = (code or grpc.StatusCode.OK).name
        metadata = dict(context.trailing_metadata() or ())
        if self.error_key in metadata:
            observe_error("grpc", str(metadata[self.error_key]))
        GRPC_REQUESTS.labels(self.method, name).inc()
        GRPC_LATENCY.labels(self.method, name).observe(time.perf_counter() - self.start)


def _awaited(method: str, key: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Unary responses, and streams written with ``context.write`` (health ``Watch``)."""

    async def call(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        meter, error = _Call(method, key), None
        try:
            return await behavior(request_or_iterator, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.finish(context, error)

    return call


def _iterated(
    method: str, key: str, behavior: Callable[..., AsyncIterator[Any]]
) -> Callable[..., Any]:
    """Streams of yielded responses (``Stream``, reflection)."""

    async def call(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
        meter, error = _Call(method, key), None
        try:
            async for response in behavior(request_or_iterator, context):
                yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            meter.finish(context, error)

    return call


KINDS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """``error_key``: the trailing-metadata key that carries the API's error code."""

    def __init__(self, error_key: str) -> None:
        self.error_key = error_key

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED, nothing to label
            return handler
        method = handler_call_details.method
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        for kind, make in KINDS.items():
            behavior = getattr(handler, kind)
            if behavior is None:
                continue
            if inspect.isasyncgenfunction(behavior):
                return make(_iterated(method, self.error_key, behavior), **codec)
            if inspect.iscoroutinefunction(behavior):
                return make(_awaited(method, self.error_key, behavior), **codec)
        return handler  # a synchronous behaviour (none here): left as it is
