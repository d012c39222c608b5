"""The API's errors, whatever the transport: each has the HTTP status and the error code it is
answered with (``{"error": {"code", "message"}}``); ``service.grpc.status`` maps the status to
a gRPC code."""

from __future__ import annotations


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidImage(ApiError):
    status, code = 400, "invalid_image"


class InvalidVideo(ApiError):
    status, code = 400, "invalid_video"


class UnknownModel(ApiError):
    status, code = 404, "unknown_model"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class StreamLimitExceeded(PayloadTooLarge):
    """The stream went over the frame or duration limit: it ends."""


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidParameter(ApiError):
    status, code = 422, "invalid_parameter"


class InferenceFailed(ApiError):
    """Triton answered this request with an error."""

    status, code = 502, "inference_failed"


class ServiceUnavailable(ApiError):
    """Triton cannot be reached or is not ready; the client may retry."""

    status, code = 503, "service_unavailable"
