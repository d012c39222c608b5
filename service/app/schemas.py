"""What the API answers, whatever the transport: the pydantic models behind the HTTP JSON, the
OpenAPI docs and (field for field, see ``service.grpc.messages``) the gRPC messages."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Keypoint(BaseModel):
    name: str
    x: float
    y: float
    score: float


class Person(BaseModel):
    bbox: list[float] = Field(description="[x1, y1, x2, y2] in image pixels")
    score: float = Field(description="detector confidence")
    keypoints: list[Keypoint] = Field(description="empty when keypoints=false")


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str


class ModelUsed(BaseModel):
    name: str
    version: int
    trained: bool = Field(description="false for an untrained (seeded random) export")
    warning: str | None = None
    role: str = Field(
        "live", description="live, or canary: a candidate on trial answered this request"
    )


class ModelsUsed(BaseModel):
    detector: ModelUsed | None = Field(description="null for a one-stage model (RTMO)")
    pose: ModelUsed | None = Field(description="null when keypoints=false")


class Timings(BaseModel):
    decode_ms: float
    inference_ms: float = Field(description="round trip to Triton")
    total_ms: float
    stages_ms: dict[str, float] = Field(
        description="inside Triton: preprocess (with decoding, for an encoded image), "
        "detector, pose, postprocess"
    )


class PoseResponse(BaseModel):
    image: ImageInfo
    persons: list[Person]
    models: ModelsUsed
    timings: Timings
    warnings: list[str] = Field(default_factory=list)


class VersionInfo(BaseModel):
    version: int
    serving: bool
    ready: bool
    trained: bool
    meta: dict[str, Any]


class TrialInfo(BaseModel):
    version: int = Field(description="the candidate")
    mode: str = Field(description="shadow: copies only; canary: it answers its share")
    share: float
    live_version: int
    started: str
    rule: dict[str, Any] | None = Field(description="ends the trial by itself when set")
    running: bool = Field(
        description="the candidate is loaded on this replica's Triton and the trial runs here"
    )
    figures: dict[str, Any] = Field(
        description="every replica's: pairs compared, copies failed or skipped, agreement "
        "(mean OKS), person-count differences, pose-time p95s and their ratio"
    )


class ModelInfo(BaseModel):
    name: str
    task: str
    serving_version: int
    spec: dict[str, Any]
    keypoint_set: str | None = Field(
        None, description="coco, halpe26, coco_wholebody, hand21, ap10k, face106 (null: none)"
    )
    versions: list[VersionInfo]
    trial: TrialInfo | None = Field(None, description="a candidate on trial, if any")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    default_detector: str
    default_pose_model: str


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Readiness(BaseModel):
    ready: bool
    triton: bool
    models: dict[str, bool]
    reason: str | None = None


class TrackedPerson(Person):
    track_id: int = Field(description="stable within the stream, never reused")
    detected: bool = Field(
        description="the detector found this person in this frame; false: the box was derived "
        "from the track's previous keypoints"
    )


class FrameResult(BaseModel):
    frame_index: int = Field(description="0, 1, 2... in the order the frames came")
    timestamp: float = Field(description="seconds")
    detected: bool = Field(description="the detector ran on this frame")
    image: ImageInfo | None = Field(description="null when the frame could not be decoded")
    persons: list[TrackedPerson] = Field(
        description="bbox: the box the pose model ran on; score: the track's latest detection"
    )
    models: ModelsUsed
    timings: Timings
    warnings: list[str] = Field(default_factory=list)
    error: ErrorDetail | None = Field(None, description="set when this frame failed")
