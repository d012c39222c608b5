"""The API's errors, whatever the transport: each has the HTTP status and the error code it is
answered with (``{"error": {"code", "message"}}``); ``service.grpc.status`` maps the status to
a gRPC code."""

from __future__ import annotations


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after  # seconds; HTTP Retry-After, gRPC ``retry-after``

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidImage(ApiError):
    status, code = 400, "invalid_image"


class InvalidVideo(ApiError):
    status, code = 400, "invalid_video"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class UnknownModel(ApiError):
    status, code = 404, "unknown_model"


class RequestTimeout(ApiError):
    """The client sent too slowly (an upload or a stream went idle, or took too long)."""

    status, code = 408, "request_timeout"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class StreamLimitExceeded(PayloadTooLarge):
    """The stream went over the frame or duration limit: it ends."""


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidParameter(ApiError):
    status, code = 422, "invalid_parameter"


class RateLimited(ApiError):
    """This client asks more than its share: its key's rate, or its open streams."""

    status, code = 429, "rate_limited"


class InferenceFailed(ApiError):
    """Triton answered this request with an error."""

    status, code = 502, "inference_failed"


class ServiceUnavailable(ApiError):
    """Triton cannot be reached or is not ready; the client may retry."""

    status, code = 503, "service_unavailable"


class Overloaded(ServiceUnavailable):
    """The gateway is at capacity: shed now so that accepted requests keep their latency."""

    code = "overloaded"
