"""Pipeline arrays + model info + timings -> the JSON response."""

from __future__ import annotations

import numpy as np

from service.core.pipeline import STAGES
from service.triton.client import PipelineResult

from .models import ServedModel
from .schemas import ImageInfo, Keypoint, ModelsUsed, ModelUsed, Person, PoseResponse, Timings


def model_used(model: ServedModel | None) -> ModelUsed | None:
    if model is None:
        return None
    return ModelUsed(
        name=model.ref.name, version=model.ref.version, trained=model.trained, warning=model.warning
    )


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


def persons(result: PipelineResult, keypoint_names: tuple[str, ...]) -> list[Person]:
    return [
        Person(**person_fields(box, kpts, keypoint_names))
        for box, kpts in zip(result.boxes, result.keypoints, strict=True)
    ]


def pose_response(
    image: np.ndarray,
    fmt: str,
    result: PipelineResult,
    detector: ServedModel,
    pose: ServedModel | None,
    keypoint_names: tuple[str, ...],
    decode_ms: float,
    inference_ms: float,
    total_ms: float,
) -> PoseResponse:
    models = ModelsUsed(detector=model_used(detector), pose=model_used(pose))
    return PoseResponse(
        image=ImageInfo(width=image.shape[1], height=image.shape[0], format=fmt),
        persons=persons(result, keypoint_names),
        models=models,
        timings=Timings(
            decode_ms=round(decode_ms, 3),
            inference_ms=round(inference_ms, 3),
            total_ms=round(total_ms, 3),
            stages_ms={k: round(float(v), 3) for k, v in zip(STAGES, result.stage_ms, strict=True)},
        ),
        warnings=[m.warning for m in (models.detector, models.pose) if m and m.warning],
    )
