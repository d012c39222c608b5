"""The HTTP face of the API's errors: JSON bodies, their OpenAPI documentation, and counting
them by code."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.app.errors import ApiError, InvalidParameter
from service.app.options import problems
from service.app.schemas import ErrorResponse
from service.metrics.record import observe_error

ERROR_CODES = (400, 401, 404, 408, 413, 415, 422, 429, 502, 503)
ERROR_RESPONSES = {code: {"model": ErrorResponse} for code in ERROR_CODES}
# for routes whose success is not JSON: errors still are
JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
STREAM_ERROR_RESPONSES = {
    code: {"description": "error", "content": JSON_ERROR} for code in ERROR_CODES if code != 502
}
BINARY = {"type": "string", "format": "binary"}
# the body may be unread (too slow, too large, refused before it was received): the connection
# ends with the answer, so the rest is never drained and a trickling client holds nothing
CLOSE_AFTER = frozenset({408, 413, 503})


def binary_body(kind: str, subtypes: tuple[str, ...]) -> dict:
    """OpenAPI request body: a multipart ``file`` or the raw bytes of one of ``subtypes``."""
    multipart = {"type": "object", "properties": {"file": BINARY}, "required": ["file"]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                **{f"{kind}/{t}": {"schema": BINARY} for t in subtypes},
            },
        }
    }


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    observe_error("http", exc.code)
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status in CLOSE_AFTER:
        headers["Connection"] = "close"
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return await _api_error(request, InvalidParameter(problems(exc.errors())))


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
