"""API answers drawn over their image: the request options of ``/v1/pose/render``, video
``render=mp4``, ``rtmserve render`` and the client's ``result.render()``, on top of
``service.core.render``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from service.core.keypoints import COCO, KeypointSet, set_of
from service.core.render import RenderOptions, render

from .schemas import Person


class RenderQuery(BaseModel):
    """How to draw (query parameters of the render endpoints; fields of ``RenderOptions``)."""

    model_config = ConfigDict(extra="ignore")

    style: Literal["mmpose", "openpose"] = Field("mmpose", description="skeleton colours")
    kpt_thr: float = Field(
        0.3, ge=0.0, le=1.0, description="keypoints under this score are not drawn"
    )
    radius: int = Field(3, ge=0, le=50, description="keypoint radius, pixels")
    thickness: int = Field(2, ge=1, le=50, description="limb thickness, pixels")
    boxes: bool = Field(True, description="draw person boxes (and track IDs on video)")
    black_background: bool = Field(False, description="skeletons on black, not on the image")

    def options(self) -> RenderOptions:
        return RenderOptions(
            style=self.style, kpt_thr=self.kpt_thr, radius=self.radius,
            thickness=self.thickness, boxes=self.boxes, track_ids=self.boxes,
            black_background=self.black_background,
        )  # fmt: skip


def person_arrays(persons: Sequence[Person]) -> tuple[np.ndarray, np.ndarray, list[int] | None]:
    """Boxes [N,4], keypoints [N,K,3] and track IDs (None unless every person has one)."""
    boxes = np.array([p.bbox for p in persons], np.float64).reshape(-1, 4)
    k = max((len(p.keypoints) for p in persons), default=0)
    kpts = np.zeros((len(persons), k, 3))
    for n, p in enumerate(persons):
        for i, kp in enumerate(p.keypoints):
            kpts[n, i] = kp.x, kp.y, kp.score
    ids = [getattr(p, "track_id", None) for p in persons]
    return boxes, kpts, None if any(i is None for i in ids) else ids


def keypoint_set_of(persons: Sequence[Person]) -> KeypointSet:
    """The set the answer's keypoint names are (COCO for boxes only or a custom model)."""
    names = next((tuple(k.name for k in p.keypoints) for p in persons if p.keypoints), ())
    return set_of(names) or COCO


def draw(
    image: np.ndarray, persons: Sequence[Person], query: RenderQuery | None = None
) -> np.ndarray:
    """A new BGR image with ``persons`` (image or video answers) drawn over ``image``."""
    boxes, kpts, ids = person_arrays(persons)
    options = (query or RenderQuery()).options()
    return render(image, boxes, kpts, ids, options, keypoint_set_of(persons))
