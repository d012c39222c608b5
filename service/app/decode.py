"""What the gateway checks of an image before any work is spent on it, and decoding.

The format is recognised from the file's magic bytes, and the pixel count is read from the
header, so a small file that would decompress to gigapixels is refused with 413 instead of
exhausting memory. ``inspect`` stops there: an uploaded image travels to the pipeline encoded
(a fifth of the bytes of its pixels) and is decoded there, where a truncated or corrupt file
is refused (``service.core.image``). ``decode_image`` does both here (video frames, gRPC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.core.image import FORMATS, CorruptImage, decode, sniff_format, upright_size

from .errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

SUPPORTED = FORMATS


@dataclass(frozen=True)
class ImageIn:
    """An image on its way to the pipeline: its pixels, or its file (decoded there)."""

    payload: np.ndarray | bytes  # HxWx3 BGR uint8, or the encoded file
    format: str  # jpeg, png, webp, bmp; bgr or rgb for raw pixels
    width: int  # upright (EXIF orientation applied)
    height: int

    @classmethod
    def pixels(cls, image: np.ndarray, fmt: str) -> ImageIn:
        return cls(image, fmt, image.shape[1], image.shape[0])


def inspect(data: bytes, max_pixels: int) -> ImageIn:
    """Refuses what is empty (400), not a supported image (415) or too large (413)."""
    if not data:
        raise InvalidImage("the request carries no image (empty body or file)")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedMediaType("not a supported image: expected JPEG, PNG, WebP or BMP content")
    try:
        width, height = upright_size(data)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(str(exc)) from exc
    except CorruptImage as exc:
        raise InvalidImage(str(exc)) from exc
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    return ImageIn(data, fmt, width, height)


def decode_image(data: bytes, max_pixels: int) -> tuple[np.ndarray, str]:
    """The BGR uint8 image (EXIF orientation applied, as OpenCV does) and its format."""
    found = inspect(data, max_pixels)
    try:
        return decode(data), found.format
    except CorruptImage as exc:
        raise InvalidImage(str(exc)) from exc


RAW_FORMATS = ("bgr", "rgb")


def decode_raw(pixels: bytes, width: int, height: int, fmt: str, max_pixels: int) -> np.ndarray:
    """Uncompressed 8-bit HxWx3 pixels (BGR or RGB) -> a BGR image, checked against its shape."""
    if fmt not in RAW_FORMATS:
        raise InvalidImage(f"raw pixel format must be one of {RAW_FORMATS}, not {fmt!r}")
    if width <= 0 or height <= 0:
        raise InvalidImage(f"raw image size must be positive, got {width}x{height}")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    expected = width * height * 3
    if len(pixels) != expected:
        raise InvalidImage(
            f"raw {width}x{height}x3 image needs {expected} bytes, got {len(pixels)}"
        )
    image = np.frombuffer(pixels, np.uint8).reshape(height, width, 3)
    return image[..., ::-1].copy() if fmt == "rgb" else image
