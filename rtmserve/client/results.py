"""Typed results: the server's own response models, plus drawing."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import PrivateAttr

from service.app.render import RenderQuery, draw
from service.app.schemas import PoseResponse

from .images import ImageLike, to_pixels


class PoseResult(PoseResponse):
    """``POST /v1/pose``'s answer; ``render()`` draws it over the image it came from."""

    _image: Any = PrivateAttr(None)

    def render(self, image: ImageLike | None = None, **options: Any) -> np.ndarray:
        """BGR pixels with every person drawn (``service.core.render``: style, kpt_thr, radius,
        thickness, boxes, black_background). ``image`` defaults to the one sent."""
        source = self._image if image is None else image
        if source is None:
            raise ValueError("this result does not hold its image: pass it to render(image)")
        return draw(to_pixels(source), self.persons, RenderQuery(**options))


class RtmserveError(Exception):
    """An error answer: HTTP status (or gRPC code), the API's error code and message."""

    def __init__(self, status: int | str, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
