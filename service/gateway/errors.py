"""Errors the gateway turns into 4xx/5xx JSON bodies: ``{"error": {"code", "message"}}``."""

from __future__ import annotations


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidImage(ApiError):
    status, code = 400, "invalid_image"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnknownModel(ApiError):
    status, code = 404, "unknown_model"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


class UpstreamError(ApiError):
    status, code = 502, "inference_failed"
