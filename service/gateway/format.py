"""Pipeline arrays + model info + timings -> the JSON response."""

from __future__ import annotations

import numpy as np

from service.triton.client import PipelineResult

from .models import ServedModel
from .schemas import ImageInfo, Keypoint, ModelsUsed, ModelUsed, Person, PoseResponse, Timings

STAGES = ("preprocess", "detector", "pose", "postprocess")


def model_used(model: ServedModel) -> ModelUsed:
    return ModelUsed(
        name=model.ref.name, version=model.ref.version, trained=model.trained, warning=model.warning
    )


def persons(result: PipelineResult, keypoint_names: tuple[str, ...]) -> list[Person]:
    out = []
    for box, kpts in zip(result.boxes, result.keypoints, strict=True):
        out.append(
            Person(
                bbox=[round(float(v), 2) for v in box[:4]],
                score=round(float(box[4]), 4),
                keypoints=[
                    Keypoint(
                        name=n, x=round(float(x), 2), y=round(float(y), 2), score=round(float(s), 4)
                    )
                    for n, (x, y, s) in zip(keypoint_names, kpts, strict=True)
                ],
            )
        )
    return out


def pose_response(
    image: np.ndarray,
    fmt: str,
    result: PipelineResult,
    detector: ServedModel,
    pose: ServedModel,
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
        warnings=[w for w in (models.detector.warning, models.pose.warning) if w],
    )
