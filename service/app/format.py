"""Pipeline arrays + model info + timings -> the API's response models (images and frames)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from service.core.pipeline import STAGES
from service.triton.client import PipelineResult

from .decode import ImageIn
from .models import ServedModel
from .schemas import ImageInfo, Keypoint, ModelsUsed, ModelUsed, Person, PoseResponse, Timings


def _used(model: ServedModel | None) -> ModelUsed | None:
    if model is None:
        return None
    return ModelUsed(
        name=model.name,
        version=model.version,
        trained=model.trained,
        warning=model.warning,
        role=model.role,
    )


def models_used(
    detector: ServedModel | None, pose: ServedModel | None
) -> tuple[ModelsUsed, list[str]]:
    """The ``models`` block of a response and the warnings it carries (untrained, not official)."""
    used = ModelsUsed(detector=_used(detector), pose=_used(pose))
    return used, [m.warning for m in (used.detector, used.pose) if m and m.warning]


def timings(
    decode_ms: float, inference_ms: float, total_ms: float, stage_ms: np.ndarray | None
) -> Timings:
    stages = np.zeros(len(STAGES)) if stage_ms is None else stage_ms
    return Timings(
        decode_ms=round(decode_ms, 3),
        inference_ms=round(inference_ms, 3),
        total_ms=round(total_ms, 3),
        stages_ms={k: round(float(v), 3) for k, v in zip(STAGES, stages, strict=True)},
    )


def image_info(image: ImageIn) -> ImageInfo:
    return ImageInfo(width=image.width, height=image.height, format=image.format)


def _r(value: float) -> float:
    """4 decimals: far below a pixel, yet exact enough for sub-pixel boxes to keep their IoU."""
    return round(float(value), 4)


def person_fields(box: np.ndarray, kpts: np.ndarray, keypoint_names: tuple[str, ...]) -> dict:
    """One person's ``bbox``, ``score`` (box[4]) and named ``keypoints``, as the API rounds them."""
    return {
        "bbox": [_r(v) for v in box[:4]],
        "score": _r(box[4]),
        "keypoints": [
            Keypoint(name=n, x=_r(x), y=_r(y), score=_r(s))
            for n, (x, y, s) in zip(keypoint_names, kpts, strict=len(kpts) > 0)
        ],
    }


def pose_response(
    image: ImageIn,
    result: PipelineResult,
    detector: ServedModel,
    pose: ServedModel | None,
    decode_ms: float,
    inference_ms: float,
    total_ms: float,
) -> PoseResponse:
    names = pose.keypoint_names if pose else ()
    used, warnings = models_used(detector, pose)
    return PoseResponse(
        image=image_info(image),
        persons=[
            Person(**person_fields(box, kpts, names))
            for box, kpts in zip(result.boxes, result.keypoints, strict=True)
        ],
        models=used,
        timings=timings(decode_ms, inference_ms, total_ms, result.stage_ms),
        warnings=warnings,
    )


# an absolute path, alone or after "mirror:", "import:", a space...
_PATH = re.compile(r"(?:(?<=[:\s(])|^)/(?!/)[^\s:,;()'\"]+")


def public_meta(value: Any) -> Any:
    """Version metadata as clients see it: server file paths reduced to their file names."""
    if isinstance(value, str):
        local = value.replace("file://", "")
        return _PATH.sub(lambda m: PurePosixPath(m.group(0)).name, local)
    if isinstance(value, dict):
        return {k: public_meta(v) for k, v in value.items()}
    if isinstance(value, list):
        return [public_meta(v) for v in value]
    return value
