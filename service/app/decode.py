"""Bytes -> BGR image, refusing what is not a supported image before spending time on it.

The format is recognised from the file's magic bytes (clients often send a wrong or generic
Content-Type), and the pixel count is read from the header before decoding, so a small file
that would decompress to gigapixels is refused with 413 instead of exhausting memory. A
truncated or corrupt file is refused with 400: OpenCV decodes what it can of one and fills the
rest with grey, silently, so Pillow decodes it first as the integrity check (it raises on both;
about 2 ms for a 640x480 JPEG). OpenCV then makes the pixels, as the official SDK does.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

from .errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

SUPPORTED = ("jpeg", "png", "webp", "bmp")


def sniff_format(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    return None


def check_image(data: bytes, max_pixels: int) -> None:
    """Size from the header alone (Pillow opens lazily), then a full decode that fails on a
    truncated or corrupt file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise PayloadTooLarge(
                        f"image is {width}x{height} = {width * height} pixels; "
                        f"the limit is {max_pixels}"
                    )
                try:
                    im.load()
                except (OSError, SyntaxError, ValueError) as exc:
                    raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(str(exc)) from exc
        except (OSError, SyntaxError, ValueError) as exc:  # Image.open: no header it can read
            raise InvalidImage(f"cannot read the image header: {exc}") from exc


def decode_image(data: bytes, max_pixels: int) -> tuple[np.ndarray, str]:
    """Returns the BGR uint8 image (EXIF orientation applied, as OpenCV does) and its format."""
    if not data:
        raise InvalidImage("the request carries no image (empty body or file)")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedMediaType("not a supported image: expected JPEG, PNG, WebP or BMP content")
    check_image(data, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InvalidImage(f"the {fmt.upper()} data is corrupt or truncated and cannot be decoded")
    return image, fmt


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
