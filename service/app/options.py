"""What a request may ask for: one pydantic model per request kind, validated the same way at
every edge (HTTP query parameters with ``Annotated[Model, Query()]``, gRPC message fields),
so all APIs accept the same names, defaults and ranges. ``None`` means the server's setting.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.metadata import MODEL_NAME

from .errors import InvalidParameter

M = TypeVar("M", bound=BaseModel)


def _max_persons():
    return Field(None, ge=1, le=1000, description="keep the N highest-scoring persons")


def _pose_model():
    return Field(None, pattern=MODEL_NAME, description="pose model name (see /v1/models)")


def _detector():
    return Field(None, pattern=MODEL_NAME, description="detector model name (see /v1/models)")


class PoseOptions(BaseModel):
    """One image: ``POST /v1/pose`` and gRPC ``Estimate``."""

    model_config = ConfigDict(protected_namespaces=())

    score_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="detector score threshold (default: the server's)"
    )
    max_persons: int | None = _max_persons()
    pose_model: str | None = _pose_model()
    detector: str | None = _detector()
    keypoints: bool = Field(True, description="false: person boxes only (no pose model)")


class StreamOptions(BaseModel):
    """One video: gRPC ``StreamConfig`` and ``POST /v1/pose/video``. Defaults are MMDeploy
    PoseTracker's."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    det_interval: int | None = Field(
        None, ge=1, le=1000, description="run the detector every N frames (default: the server's)"
    )
    score_threshold: float = Field(0.5, ge=0.0, le=1.0, description="detector score threshold")
    max_persons: int | None = _max_persons()
    pose_model: str | None = _pose_model()
    detector: str | None = _detector()
    smoothing: bool = Field(True, description="One-Euro filter on keypoints, per track")
    smoothing_beta: float = Field(0.007, ge=0.0, le=100.0, description="One-Euro beta")
    smoothing_min_cutoff: float = Field(1.0, gt=0.0, le=1000.0, description="One-Euro fc_min, Hz")
    smoothing_d_cutoff: float = Field(
        1.0, gt=0.0, le=1000.0, description="One-Euro derivative cutoff, Hz"
    )
    det_nms_thr: float = Field(
        0.7, ge=0.0, le=1.0, description="IoU above which a track box duplicates a detection"
    )
    pose_kpt_thr: float = Field(
        0.5, ge=0.0, le=1.0, description="score from which a keypoint counts as visible"
    )
    pose_min_keypoints: int | None = Field(
        None, ge=1, le=1000, description="visible keypoints a valid pose needs (ceil(K/2))"
    )
    pose_bbox_scale: float = Field(
        1.25, gt=0.0, le=10.0, description="keypoint extent -> next frame's box expansion"
    )
    pose_nms_thr: float = Field(
        0.5, ge=0.0, le=1.0, description="OKS above which two poses are the same person"
    )
    track_iou_thr: float = Field(
        0.4, ge=0.0, le=1.0, description="IoU a detection needs to join a track"
    )
    track_max_missing: int = Field(
        10, ge=0, le=10_000, description="frames a track survives unseen before it is dropped"
    )
    fps: float | None = Field(
        None, gt=0.0, le=1000.0, description="frame rate for frames without timestamps"
    )


def validated(model: type[M], fields: dict) -> M:
    """``model(**fields)``, or ``InvalidParameter`` naming every problem."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise InvalidParameter(problems(exc.errors())) from None


def problems(errors) -> str:
    """pydantic/FastAPI validation errors as one line: ``field: message; ...``."""

    def where(loc: tuple) -> str:
        inner = loc[1:] if loc and loc[0] in ("query", "body", "path", "header") else loc
        return ".".join(str(p) for p in inner) or str(loc[0])

    return "; ".join(f"{where(tuple(e['loc']))}: {e['msg']}" for e in errors)
