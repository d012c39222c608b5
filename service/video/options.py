"""Per-stream options: the gRPC ``StreamConfig`` and the query of ``POST /v1/pose/video``.

One pydantic model validates both edges, so the two APIs accept the same names, defaults and
ranges. Defaults are MMDeploy PoseTracker's; ``None`` means the server's setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .smoothing import OneEuroParams
from .tracking import TrackingParams


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    det_interval: int | None = Field(
        None, ge=1, le=1000, description="run the detector every N frames (default: the server's)"
    )
    score_threshold: float = Field(0.5, ge=0.0, le=1.0, description="detector score threshold")
    max_persons: int | None = Field(None, ge=1, le=1000, description="detections kept per frame")
    pose_model: str | None = Field(None, description="pose model name (see /v1/models)")
    detector: str | None = Field(None, description="detector model name (see /v1/models)")
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

    @property
    def tracking(self) -> TrackingParams:
        return TrackingParams(
            det_nms_thr=self.det_nms_thr,
            pose_kpt_thr=self.pose_kpt_thr,
            pose_min_keypoints=self.pose_min_keypoints,
            pose_bbox_scale=self.pose_bbox_scale,
            pose_nms_thr=self.pose_nms_thr,
            track_iou_thr=self.track_iou_thr,
            track_max_missing=self.track_max_missing,
        )

    @property
    def one_euro(self) -> OneEuroParams:
        return OneEuroParams(
            min_cutoff=self.smoothing_min_cutoff,
            beta=self.smoothing_beta,
            d_cutoff=self.smoothing_d_cutoff,
        )
