"""Encoded image bytes -> BGR pixels, refusing truncated or corrupt files.

OpenCV decodes what it can of a truncated file and fills the rest with grey, silently; Pillow
raises on truncation and on corrupt data, so Pillow decodes every file. A JPEG keeps Pillow's
pixels: they are OpenCV's (libjpeg-turbo in both; checked on every COCO photo and EXIF
orientation by tests/unit/test_guards.py). Other formats are decoded again by OpenCV, as the
official SDK reads them (16-bit PNG to 8 bits, alpha dropped). Used by the gateway and, for
images that travel encoded, by the Triton pipeline model.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

FORMATS = ("jpeg", "png", "webp", "bmp")
# Pillow reads the EXIF orientation lazily; these turn the image by 90 degrees
SWAPS_AXES = (5, 6, 7, 8)


class CorruptImage(ValueError):
    """Truncated, corrupt, or not decodable at all."""


def sniff_format(data: bytes) -> str | None:
    """The format the magic bytes say (clients often send a wrong or generic Content-Type)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    return None


def upright_size(data: bytes) -> tuple[int, int]:
    """(width, height) once EXIF orientation is applied, from the header alone. Raises
    ``Image.DecompressionBombError`` for absurd sizes, ``CorruptImage`` for no header."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                orientation = im.getexif().get(0x0112, 1) if im.format == "JPEG" else 1
        except Image.DecompressionBombError:
            raise
        except (OSError, SyntaxError, ValueError) as exc:
            raise CorruptImage(f"cannot read the image header: {exc}") from exc
    return (height, width) if orientation in SWAPS_AXES else (width, height)


def decode(data: bytes) -> np.ndarray:
    """BGR uint8 pixels, EXIF orientation applied; ``CorruptImage`` when truncated/corrupt."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                if im.format == "JPEG" and im.mode in ("RGB", "L"):
                    upright = ImageOps.exif_transpose(im)
                    rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
                    return cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)  # one copy
        except (OSError, SyntaxError, ValueError) as exc:
            raise CorruptImage(f"the image is truncated or corrupt: {exc}") from exc
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise CorruptImage("the image data is corrupt or truncated and cannot be decoded")
    return image
