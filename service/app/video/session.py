"""One video stream: decoded frames in, one tracked, smoothed ``FrameResult`` per frame out.

The gRPC ``Stream`` call and ``POST /v1/pose/video`` both feed a ``StreamSession``; only how
frames arrive differs. Per frame at most one Triton pipeline call: on detection frames it runs
the detector, then the pose model on the detections and on the visible tracks the detector
missed (the tracks travel with the request, ``service.core.association`` decides); in between,
the pose model alone on the boxes the tracks predict. A one-stage model (RTMO) runs on every
frame and its people join the tracks the same way.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from service.core.keypoints import set_of
from service.core.pipeline import STAGES
from service.metrics.record import metered_stream

from ..access import Client
from ..context import Services
from ..decode import ImageIn
from ..errors import ApiError, InferenceFailed, ServiceUnavailable, StreamLimitExceeded
from ..format import image_info, models_used, person_fields, timings
from ..inference import infer
from ..models import ModelIndex, ServedModel
from ..options import StreamOptions
from ..schemas import ErrorDetail, FrameResult, TrackedPerson
from .smoothing import OneEuroFilter, OneEuroParams
from .tracking import Candidate, Tracker, TrackingParams

DEFAULT_FPS = 30.0


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
    detector: ServedModel | None  # None: a one-stage pose model
    pose: ServedModel

    @classmethod
    def resolve(cls, index: ModelIndex, options: StreamOptions) -> StreamModels:
        """Raises ``UnknownModel`` (404 / NOT_FOUND) before any frame is read."""
        detector, pose = index.resolve(options.detector, options.pose_model, stream=True)
        assert pose is not None
        return cls(detector, pose)


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


def tracking_params(options: StreamOptions) -> TrackingParams:
    return TrackingParams(
        det_nms_thr=options.det_nms_thr,
        pose_kpt_thr=options.pose_kpt_thr,
        pose_min_keypoints=options.pose_min_keypoints,
        pose_bbox_scale=options.pose_bbox_scale,
        pose_nms_thr=options.pose_nms_thr,
        track_iou_thr=options.track_iou_thr,
        track_max_missing=options.track_max_missing,
    )


def one_euro_params(options: StreamOptions) -> OneEuroParams:
    return OneEuroParams(
        min_cutoff=options.smoothing_min_cutoff,
        beta=options.smoothing_beta,
        d_cutoff=options.smoothing_d_cutoff,
    )


class StreamSession:
    """Tracking, smoothing and limits of one stream; ``process`` takes frames in order."""

    def __init__(
        self,
        services: Services,
        models: StreamModels,
        options: StreamOptions,
        fps: float | None = None,
        client: Client | None = None,
        live: bool = False,
    ) -> None:
        """``client``: whose rate every frame draws from (``AccessControl.pace``); ``live``:
        frames arrive from the client as it pleases (gRPC, WebSocket), so the duration limit
        counts on the server's clock, not on timestamps the client chose: the time the stream
        has been open less the time the server spent on its frames (``busy``), i.e. the time
        it held its slot waiting for the client's frames (or its rate). A client that sends
        faster than the service answers is never cut short; one that trickles frames stamped
        0 is."""
        settings = services.settings
        self.client, self.live = client, live
        self.started, self.busy = time.monotonic(), 0.0
        self.services, self.models, self.options = services, models, options
        # a one-stage model finds the people on every frame: there is nothing to skip
        self.det_interval = (
            1 if models.pose.one_stage else options.det_interval or settings.video_det_interval
        )
        self.max_persons = options.max_persons or settings.max_persons
        self.max_frames, self.max_seconds = settings.max_video_frames, settings.max_video_seconds
        self.fps = options.fps or fps or DEFAULT_FPS
        kset = set_of(models.pose.keypoint_names)  # OKS needs the set's sigmas; else boxes only
        sigmas = np.array(kset.sigmas) if kset and kset.sigmas else None
        self.tracker = Tracker(tracking_params(options), sigmas)
        self.one_euro = one_euro_params(options)
        self.smoothers: dict[int, OneEuroFilter] = {}
        self.models_used, self.warnings = models_used(models.detector, models.pose)
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
        waiting = time.monotonic() - self.started - self.busy
        if self.live and waiting > self.max_seconds:
            raise StreamLimitExceeded(
                f"the stream exceeds the limit of {self.max_seconds:g} s ({waiting:.1f} s "
                "waiting for frames or the client's rate, whatever the frames' timestamps)"
            )
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
        except InferenceFailed as exc:  # this frame fails; ServiceUnavailable ends the stream
            return self._result(index, t, frame, start, error=exc)
        update = self.tracker.update(inference.candidates, inference.keypoints)
        for track_id in (*update.started, *update.ended):
            self.smoothers.pop(track_id, None)  # new, recovered or gone: start afresh
        clock = t if self._clock is None or t > self._clock else self._clock + 1 / self.fps
        self._clock = clock
        persons = []
        names = self.models.pose.keypoint_names
        for i, track_id in update.persons:
            c, kpts = inference.candidates[i], inference.keypoints[i].copy()
            if self.options.smoothing:
                smoother = self.smoothers.setdefault(track_id, OneEuroFilter(self.one_euro))
                kpts[:, :2] = smoother(kpts[:, :2], clock)
            fields = person_fields(np.append(c.box, c.score), kpts, names)
            persons.append(TrackedPerson(track_id=track_id, detected=c.detected, **fields))
        return self._result(index, t, frame, start, inference=inference, persons=persons)

    async def _infer(self, image: np.ndarray) -> _Inference:
        height, width = image.shape[:2]
        detect = self._until_detection == 0
        detector, pose = self.models.detector, self.models.pose
        t = time.perf_counter()
        if detect:
            p = self.tracker.params
            table = self.tracker.table(width, height)
            result = await infer(
                self.services, image, detector, pose,
                score_threshold=self.options.score_threshold, max_persons=self.max_persons,
                tracks=table, track_thresholds=(p.track_iou_thr, p.det_nms_thr),
            )  # fmt: skip
            detections = result.boxes[: len(result.owner)]
            candidates = self.tracker.candidates(detections, result.owner, result.continued, table)
        else:
            candidates = self.tracker.plan(None, width, height)
            if not candidates:  # nothing to follow until the next detection
                self._until_detection -= 1
                k = len(pose.keypoint_names)
                return _Inference(False, [], np.zeros((0, k, 3), np.float32))
            boxes = np.array([[*c.box, c.score] for c in candidates], np.float32)
            result = await infer(self.services, image, None, pose, boxes=boxes)
        round_trip_ms = (time.perf_counter() - t) * 1e3
        self._until_detection = self.det_interval - 1 if detect else self._until_detection - 1
        return _Inference(detect, candidates, result.keypoints, result.stage_ms, round_trip_ms)

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
        process_ms = (time.perf_counter() - start) * 1e3
        return FrameResult(
            frame_index=index,
            timestamp=t,
            detected=bool(inference and inference.detected),
            image=None
            if frame.image is None
            else image_info(ImageIn.pixels(frame.image, frame.format)),
            persons=persons or [],
            models=self.models_used,
            timings=timings(
                frame.decode_ms,
                inference.round_trip_ms if inference else 0.0,
                frame.decode_ms + process_ms,
                inference.stage_ms if inference else None,
            ),
            warnings=self.warnings,
            error=ErrorDetail(code=error.code, message=error.message) if error else None,
        )


async def run_stream(
    session: StreamSession, frames: AsyncIterator[FrameInput], api: str = "http"
) -> AsyncIterator[FrameResult]:
    """Results in frame order; counted in ``ACTIVE_STREAMS`` and the ``api``'s metrics."""
    services = session.services
    with ACTIVE_STREAMS.track(), metered_stream(api) as meter:
        async for frame in frames:
            if services.draining_until is not None and time.monotonic() > services.draining_until:
                raise ServiceUnavailable(
                    "the server is shutting down: resume the stream from the next frame on "
                    "another replica (track IDs will start afresh)",
                    retry_after=1,
                )
            if session.client is not None:
                await services.access.pace(session.client)
            started = time.monotonic()
            result = await session.process(frame)
            session.busy += time.monotonic() - started
            error = result.error.code if result.error else None
            meter.frame(result.detected, error, result.timings, len(result.persons))
            yield result
