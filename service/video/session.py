"""One video stream: decoded frames in, one tracked, smoothed ``FrameResult`` per frame out.

The gRPC ``Stream`` call and ``POST /v1/pose/video`` both feed a ``StreamSession``; only how
frames arrive differs. Per frame, one Triton pipeline call runs the detector and the pose model
(detection frames) or the pose model alone on the boxes the tracks predict (``BOXES`` input);
a second pose-only call is made when the detector missed a visible track.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from service.core.keypoints import COCO_KEYPOINTS, COCO_SIGMAS
from service.core.pipeline import STAGES
from service.gateway.errors import ApiError, PayloadTooLarge, ServiceUnavailable
from service.gateway.format import model_used, person_fields
from service.gateway.models import ModelIndex, ServedModel
from service.gateway.schemas import ErrorDetail, ImageInfo, ModelsUsed, Timings
from service.metrics.streams import metered_stream
from service.settings import Settings
from service.triton.client import InferenceFailed, PipelineClient, TritonUnavailable

from .options import StreamOptions
from .schemas import FrameResult, TrackedPerson
from .smoothing import OneEuroFilter
from .tracking import Candidate, Tracker

DEFAULT_FPS = 30.0


class StreamLimitExceeded(PayloadTooLarge):
    """The stream went over the frame or duration limit: it ends (413 / RESOURCE_EXHAUSTED)."""


@dataclass
class FrameInput:
    """A decoded frame, or why it could not be decoded (the stream goes on)."""

    image: np.ndarray | None  # HxWx3 BGR uint8
    format: str = ""
    timestamp: float | None = None  # seconds
    error: ApiError | None = None
    decode_ms: float = 0.0


@dataclass(frozen=True)
class StreamModels:
    detector: ServedModel
    pose: ServedModel
    keypoint_names: tuple[str, ...]

    @classmethod
    def resolve(cls, index: ModelIndex, options: StreamOptions) -> StreamModels:
        """Raises ``UnknownModel`` (404 / NOT_FOUND) before any frame is read."""
        detector = index.serving(options.detector, "detector")
        pose = index.serving(options.pose_model, "pose")
        return cls(detector, pose, index.keypoint_names(pose))


@dataclass
class ActiveStreams:
    """How many sessions are running in this process (for /debug/runtime)."""

    count: int = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


ACTIVE_STREAMS = ActiveStreams()


@dataclass
class _Inference:
    detected: bool
    candidates: list[Candidate]
    keypoints: np.ndarray  # (N, K, 3)
    stage_ms: np.ndarray = field(default_factory=lambda: np.zeros(len(STAGES)))
    round_trip_ms: float = 0.0


class StreamSession:
    """Tracking, smoothing and limits of one stream; ``process`` takes frames in order."""

    def __init__(
        self,
        client: PipelineClient,
        models: StreamModels,
        options: StreamOptions,
        settings: Settings,
        fps: float | None = None,
    ) -> None:
        self.client, self.models, self.options = client, models, options
        self.det_interval = options.det_interval or settings.video_det_interval
        self.max_persons = options.max_persons or settings.max_persons
        self.max_frames, self.max_seconds = settings.max_video_frames, settings.max_video_seconds
        self.fps = options.fps or fps or DEFAULT_FPS
        coco = models.keypoint_names == COCO_KEYPOINTS
        self.tracker = Tracker(options.tracking, np.array(COCO_SIGMAS) if coco else None)
        self.smoothers: dict[int, OneEuroFilter] = {}
        used = ModelsUsed(detector=model_used(models.detector), pose=model_used(models.pose))
        self.models_used = used
        self.warnings = [m.warning for m in (used.detector, used.pose) if m and m.warning]
        self.frames = 0
        self._until_detection = 0
        self._t0: float | None = None
        self._clock: float | None = None  # strictly increasing time for the filters

    async def process(self, frame: FrameInput) -> FrameResult:
        """The frame's result; raises ``StreamLimitExceeded`` or ``ServiceUnavailable``."""
        start = time.perf_counter()
        index = self.frames
        if index >= self.max_frames:
            raise StreamLimitExceeded(f"the stream exceeds the limit of {self.max_frames} frames")
        self.frames += 1
        t = frame.timestamp if frame.timestamp is not None else index / self.fps
        self._t0 = t if self._t0 is None else self._t0
        if t - self._t0 > self.max_seconds:
            raise StreamLimitExceeded(
                f"the stream exceeds the limit of {self.max_seconds:g} s "
                f"(frame {index} is at {t - self._t0:.3f} s)"
            )
        if frame.error is not None or frame.image is None:
            error = frame.error or ApiError("the frame carries no image")
            return self._result(index, t, frame, start, error=error)
        try:
            inference = await self._infer(frame.image)
        except TritonUnavailable as exc:
            raise ServiceUnavailable(f"inference server unavailable: {exc}") from exc
        except InferenceFailed as exc:
            error = ApiError(f"inference failed: {exc}", status=502, code="inference_failed")
            return self._result(index, t, frame, start, error=error)
        update = self.tracker.update(inference.candidates, inference.keypoints)
        for track_id in (*update.started, *update.ended):
            self.smoothers.pop(track_id, None)  # new, recovered or gone: start afresh
        clock = t if self._clock is None or t > self._clock else self._clock + 1 / self.fps
        self._clock = clock
        persons = []
        for i, track_id in update.persons:
            c, kpts = inference.candidates[i], inference.keypoints[i].copy()
            if self.options.smoothing:
                smoother = self.smoothers.setdefault(track_id, OneEuroFilter(self.options.one_euro))
                kpts[:, :2] = smoother(kpts[:, :2], clock)
            box = np.append(c.box, c.score)
            persons.append(
                TrackedPerson(
                    track_id=track_id,
                    detected=c.detected,
                    **person_fields(box, kpts, self.models.keypoint_names),
                )
            )
        return self._result(index, t, frame, start, inference=inference, persons=persons)

    async def _infer(self, image: np.ndarray) -> _Inference:
        height, width = image.shape[:2]
        detect = self._until_detection == 0
        parts, stage_ms, round_trip = [], np.zeros(len(STAGES)), 0.0
        if detect:
            t = time.perf_counter()
            result = await self.client.infer(
                image,
                self.models.detector.ref,
                self.models.pose.ref,
                self.options.score_threshold,
                self.max_persons,
            )
            round_trip += time.perf_counter() - t
            stage_ms += result.stage_ms
            candidates = self.tracker.plan(result.boxes, width, height)
            parts.append(result.keypoints)
            continued = candidates[len(result.boxes) :]
        else:
            candidates = continued = self.tracker.plan(None, width, height)
        if continued:
            boxes = np.array([[*c.box, c.score] for c in continued], np.float32)
            t = time.perf_counter()
            result = await self.client.infer(
                image, self.models.detector.ref, self.models.pose.ref, 0.0, 0, boxes=boxes
            )
            round_trip += time.perf_counter() - t
            stage_ms += result.stage_ms
            parts.append(result.keypoints)
        self._until_detection = self.det_interval - 1 if detect else self._until_detection - 1
        k = len(self.models.keypoint_names)
        parts = [p for p in parts if len(p)]
        keypoints = np.concatenate(parts) if parts else np.zeros((0, k, 3), np.float32)
        return _Inference(detect, candidates, keypoints, stage_ms, round_trip * 1e3)

    def _result(
        self,
        index: int,
        t: float,
        frame: FrameInput,
        start: float,
        inference: _Inference | None = None,
        persons: list[TrackedPerson] | None = None,
        error: ApiError | None = None,
    ) -> FrameResult:
        image = None
        if frame.image is not None:
            height, width = frame.image.shape[:2]
            image = ImageInfo(width=width, height=height, format=frame.format)
        stages = inference.stage_ms if inference else np.zeros(len(STAGES))
        process_ms = (time.perf_counter() - start) * 1e3
        return FrameResult(
            frame_index=index,
            timestamp=t,
            detected=bool(inference and inference.detected),
            image=image,
            persons=persons or [],
            models=self.models_used,
            timings=Timings(
                decode_ms=round(frame.decode_ms, 3),
                inference_ms=round(inference.round_trip_ms if inference else 0.0, 3),
                total_ms=round(frame.decode_ms + process_ms, 3),
                stages_ms={k: round(float(v), 3) for k, v in zip(STAGES, stages, strict=True)},
            ),
            warnings=self.warnings,
            error=ErrorDetail(code=error.code, message=error.message) if error else None,
        )


async def run_stream(
    session: StreamSession, frames: AsyncIterator[FrameInput], api: str = "http"
) -> AsyncIterator[FrameResult]:
    """Results in frame order; counted in ``ACTIVE_STREAMS`` and the ``api``'s metrics."""
    with ACTIVE_STREAMS.track(), metered_stream(api) as meter:
        async for frame in frames:
            result = await session.process(frame)
            meter.frame(result)
            yield result
