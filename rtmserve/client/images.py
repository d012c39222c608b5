"""What the client accepts as an image, as bytes to send and as pixels to draw on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ImageLike = str | os.PathLike | bytes | bytearray | np.ndarray | Any  # Any: a PIL image


def _is_pil(image: object) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "convert")


def to_bytes(image: ImageLike, pixels_as: str = "jpeg", jpeg_quality: int = 95) -> bytes:
    """A file as it is (path or bytes: the server reads its format and EXIF); pixels (a BGR
    numpy array, as OpenCV gives, or a PIL image) as a JPEG of ``jpeg_quality`` (small, fast:
    live video) or, with ``pixels_as="png"``, losslessly."""
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        return Path(image).read_bytes()
    pixels = to_pixels(image)
    if pixels_as not in ("jpeg", "png"):
        raise ValueError(f"pixels_as must be jpeg or png, not {pixels_as!r}")
    ext, params = (".png", []) if pixels_as == "png" else (
        ".jpg", [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])  # fmt: skip
    ok, buf = cv2.imencode(ext, pixels, params)
    if not ok:
        raise ValueError(f"cannot encode the image as {pixels_as}")
    return buf.tobytes()


def to_pixels(image: ImageLike) -> np.ndarray:
    """HxWx3 BGR uint8 (EXIF orientation applied to files, as the server does)."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 BGR uint8 pixels, got {image.shape} {image.dtype}")
        return image[..., :3] if image.shape[2] == 4 else image
    if _is_pil(image):
        return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    if isinstance(image, bytes | bytearray | str | os.PathLike):
        from service.core.image import decode

        return decode(to_bytes(image))
    raise TypeError(f"not an image: {type(image).__name__} (path, bytes, numpy array, PIL image)")
