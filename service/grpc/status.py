"""The API's errors as gRPC statuses: the HTTP status picks the code, the message is the
details, and the API's error code (``invalid_image``...) travels as trailing metadata."""

from __future__ import annotations

from typing import NoReturn

import grpc

from service.app.errors import ApiError

ERROR_CODE_KEY = "rtmserve-error-code"
STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    502: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: ApiError) -> grpc.StatusCode:
    return STATUS.get(exc.status, grpc.StatusCode.UNKNOWN)


async def abort(context: grpc.aio.ServicerContext, exc: ApiError) -> NoReturn:
    """Ends the call with the status matching ``exc`` (raises)."""
    context.set_trailing_metadata(((ERROR_CODE_KEY, exc.code),))
    await context.abort(status_of(exc), exc.message)
    raise AssertionError("unreachable: abort raises")  # for type checkers
