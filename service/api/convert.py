"""Between protobuf messages and the API's pydantic models.

The HTTP responses' pydantic models are the single definition of a response's content; the
proto messages mirror their field names, so conversion is field-by-field through
``json_format`` and both APIs answer the same content by construction.
"""

from __future__ import annotations

import time
from typing import TypeVar

import numpy as np
from google.protobuf import json_format
from pydantic import BaseModel, Field, ValidationError

from service.gateway.decode import decode_image, decode_raw
from service.gateway.errors import ApiError, InvalidImage
from service.gateway.estimate import PoseQuery
from service.gateway.schemas import PoseResponse
from service.video.options import StreamOptions
from service.video.schemas import FrameResult
from service.video.session import FrameInput

from .gen import pose_pb2 as pb

M = TypeVar("M", bound=BaseModel)
PIXEL_FORMATS = {pb.PIXEL_FORMAT_UNSPECIFIED: "bgr", pb.PIXEL_FORMAT_BGR: "bgr",
                 pb.PIXEL_FORMAT_RGB: "rgb"}  # fmt: skip


class InvalidParameter(ApiError):
    status, code = 422, "invalid_parameter"


class EstimateOptions(BaseModel):
    """The query of ``POST /v1/pose``, with the same ranges."""

    score_threshold: float | None = Field(None, ge=0.0, le=1.0)
    max_persons: int | None = Field(None, ge=1, le=1000)
    pose_model: str | None = None
    detector: str | None = None
    keypoints: bool = True


def _set_fields(message) -> dict:
    """Fields the client set (proto3 ``optional`` presence; empty strings mean unset)."""
    return {f.name: v for f, v in message.ListFields() if not (isinstance(v, str) and not v)}


def _validated(model: type[BaseModel], message) -> BaseModel:
    try:
        return model(**_set_fields(message))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidParameter(problems) from None


def pose_query(request: pb.EstimateRequest) -> PoseQuery:
    fields = pb.EstimateRequest()
    fields.CopyFrom(request)
    fields.ClearField("image")
    options = _validated(EstimateOptions, fields)
    return PoseQuery(**options.model_dump())


def stream_options(config: pb.StreamConfig) -> StreamOptions:
    return _validated(StreamOptions, config)  # type: ignore[return-value]


def decode_image_message(image: pb.Image, max_pixels: int) -> tuple[np.ndarray, str]:
    """BGR pixels and their format; raises the gateway's 400/413/415 errors."""
    kind = image.WhichOneof("data")
    if kind == "encoded":
        return decode_image(image.encoded, max_pixels)
    if kind == "raw":
        raw = image.raw
        fmt = PIXEL_FORMATS.get(raw.format)
        if fmt is None:
            raise InvalidImage(f"unknown pixel format {raw.format}")
        return decode_raw(raw.pixels, raw.width, raw.height, fmt, max_pixels), fmt
    raise InvalidImage("the message carries no image (set image.encoded or image.raw)")


def frame_input(frame: pb.Frame, max_pixels: int) -> FrameInput:
    """A decoded frame, or the reason it is not (its result will carry the error)."""
    start = time.perf_counter()
    timestamp = frame.timestamp if frame.HasField("timestamp") else None
    try:
        image, fmt = decode_image_message(frame.image, max_pixels)
    except ApiError as exc:
        return FrameInput(None, "", timestamp, exc, (time.perf_counter() - start) * 1e3)
    return FrameInput(image, fmt, timestamp, None, (time.perf_counter() - start) * 1e3)


def to_message(model: BaseModel, message_type):
    """pydantic -> protobuf, field by field (unset ``None`` fields stay unset)."""
    return json_format.ParseDict(model.model_dump(exclude_none=True), message_type())


def pose_response_message(response: PoseResponse) -> pb.PoseResponse:
    return to_message(response, pb.PoseResponse)


def frame_result_message(result: FrameResult) -> pb.FrameResult:
    return to_message(result, pb.FrameResult)


def message_dict(message) -> dict:
    """Every field by its proto name; unset optional fields and messages are None (JSON null)."""
    out: dict = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            out[field.name] = dict(value)
        elif field.is_repeated:
            out[field.name] = [message_dict(v) for v in value] if sub else list(value)
        elif field.has_presence and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = message_dict(value) if sub else value
    return out


def to_model(message, model_type: type[M]) -> M:
    """protobuf -> pydantic (so a gRPC client's JSON matches the HTTP API's)."""
    return model_type.model_validate(message_dict(message))


def frame_result_model(message: pb.FrameResult) -> FrameResult:
    return to_model(message, FrameResult)
