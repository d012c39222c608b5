"""gRPC requests -> the application core's inputs: options, decoded images and frames."""

from __future__ import annotations

import time

import numpy as np

from service.app.decode import ImageIn, decode_image, decode_raw, inspect
from service.app.errors import ApiError, InvalidImage, InvalidParameter
from service.app.options import PoseOptions, StreamOptions, validated
from service.app.video.session import FrameInput

from .gen import pose_pb2 as pb
from .messages import set_fields

PIXEL_FORMATS = {pb.PIXEL_FORMAT_UNSPECIFIED: "bgr", pb.PIXEL_FORMAT_BGR: "bgr",
                 pb.PIXEL_FORMAT_RGB: "rgb"}  # fmt: skip


def pose_options(request: pb.EstimateRequest) -> PoseOptions:
    return validated(PoseOptions, {k: v for k, v in set_fields(request).items() if k != "image"})


def stream_options(config: pb.StreamConfig) -> StreamOptions:
    return validated(StreamOptions, set_fields(config))


def image_input(image: pb.Image, max_pixels: int) -> ImageIn:
    """An encoded image (decoded by the pipeline) or raw pixels; the API's 400/413/415."""
    if image.WhichOneof("data") == "encoded":
        return inspect(image.encoded, max_pixels)
    pixels, fmt = decode_image_message(image, max_pixels)
    return ImageIn.pixels(pixels, fmt)


def decode_image_message(image: pb.Image, max_pixels: int) -> tuple[np.ndarray, str]:
    """BGR pixels and their format; raises the API's 400/413/415 errors."""
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


def frame_input(request: pb.StreamRequest, max_pixels: int) -> FrameInput:
    """A decoded frame, or the reason it is not (its result will carry the error)."""
    kind = request.WhichOneof("kind")
    if kind == "config":
        raise InvalidParameter("a StreamConfig is only accepted as the first message")
    if kind != "frame":
        raise InvalidParameter("a StreamRequest must carry a config or a frame")
    frame = request.frame
    start = time.perf_counter()
    timestamp = frame.timestamp if frame.HasField("timestamp") else None
    try:
        image, fmt = decode_image_message(frame.image, max_pixels)
    except ApiError as exc:
        return FrameInput(None, "", timestamp, exc, (time.perf_counter() - start) * 1e3)
    return FrameInput(image, fmt, timestamp, None, (time.perf_counter() - start) * 1e3)
