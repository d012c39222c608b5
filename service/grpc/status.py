"""The API's errors as gRPC statuses: the HTTP status picks the code, the message is the
details, and the API's error code (``invalid_image``...) travels as trailing metadata."""

from __future__ import annotations

from typing import NoReturn

import grpc

from service.app.errors import ApiError

ERROR_CODE_KEY = "rtmserve-error-code"
RETRY_AFTER_KEY = "retry-after"  # seconds, as HTTP's Retry-After
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    502: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: ApiError) -> grpc.StatusCode:
    return STATUS.get(exc.status, grpc.StatusCode.UNKNOWN)


async def abort(context: grpc.aio.ServicerContext, exc: ApiError) -> NoReturn:
    """Ends the call with the status matching ``exc`` (raises)."""
    metadata = [(ERROR_CODE_KEY, exc.code)]
    if exc.retry_after is not None:
        metadata.append((RETRY_AFTER_KEY, str(max(1, round(exc.retry_after)))))
    context.set_trailing_metadata(tuple(metadata))
    await context.abort(status_of(exc), exc.message)
    raise AssertionError("unreachable: abort raises")  # for type checkers
