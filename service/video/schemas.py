"""One video frame's result: a line of ``POST /v1/pose/video``, a gRPC ``FrameResult``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.gateway.schemas import ErrorDetail, ImageInfo, ModelsUsed, Person, Timings


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
