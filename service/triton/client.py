"""Async gRPC client for the Triton pose pipeline (``model_repository/pipeline``)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from service.core.contract import PIPELINE_MODEL


class TritonUnavailable(RuntimeError):
    """Triton cannot be reached (or is not ready)."""


class TritonError(RuntimeError):
    """Triton answered this request with an error."""


@dataclass(frozen=True)
class ModelRef:
    """A model version as the pipeline model is told about it: name, version and spec."""

    name: str
    version: int
    spec_json: str


@dataclass(frozen=True)
class PipelineRequest:
    """One image through the pipeline. ``boxes`` instead of a ``detector``; ``tracks`` (with the
    association's IoU thresholds) also estimates the visible tracks the detector missed;
    ``pose=None``: boxes only."""

    image: np.ndarray | bytes  # HxWx3 BGR uint8, or an encoded file the pipeline decodes
    detector: ModelRef | None
    pose: ModelRef | None
    score_threshold: float = 0.0
    max_persons: int = 0
    boxes: np.ndarray | None = None
    tracks: np.ndarray | None = None
    track_thresholds: tuple[float, float] | None = None
    model: str = PIPELINE_MODEL  # COPY_PIPELINE_MODEL for a trial's copies
    timeout_s: float | None = None  # None: the client's


@dataclass(frozen=True)
class PipelineResult:
    boxes: np.ndarray  # (P, 5) x1, y1, x2, y2, score: detections, then continued tracks
    keypoints: np.ndarray  # (P, K, 3) x, y, score
    stage_ms: np.ndarray  # (4,) preprocess, detector, pose, postprocess
    owner: np.ndarray  # (D,) per detection, the index of the track it joins (-1: none)
    continued: np.ndarray  # (C,) tracks continued without a detection (after the D boxes)


_UNAVAILABLE = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"}


def _tensor(name: str, value: np.ndarray, datatype: str) -> grpcclient.InferInput:
    t = grpcclient.InferInput(name, list(value.shape), datatype)
    t.set_data_from_numpy(value)
    return t


def _model(prefix: str, ref: ModelRef) -> list[grpcclient.InferInput]:
    return [
        _tensor(prefix, np.array([ref.name.encode()], object), "BYTES"),
        _tensor(f"{prefix}_VERSION", np.array([ref.version], np.int64), "INT64"),
        _tensor(f"{prefix}_SPEC", np.array([ref.spec_json.encode()], object), "BYTES"),
    ]


# Images can be large (no 4 MB gRPC cap), and reconnect quickly when Triton comes back: gRPC's
# default backoff grows to 2 minutes, which would keep the gateway at 503 long after recovery.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
]


class PipelineClient:
    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url, channel_args=CHANNEL_ARGS)

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, coro):
        try:
            return await coro
        except InferenceServerException as exc:
            if str(exc.status()) in _UNAVAILABLE:
                raise TritonUnavailable(f"Triton at {self.url}: {exc.message()}") from exc
            raise TritonError(exc.message() or str(exc)) from exc
        except (grpc.RpcError, ConnectionError, OSError) as exc:
            raise TritonUnavailable(f"Triton at {self.url}: {exc}") from exc

    async def infer(self, request: PipelineRequest) -> PipelineResult:
        r = request
        if isinstance(r.image, bytes):
            image = _tensor("IMAGE_ENCODED", np.array([r.image], object), "BYTES")
        else:
            image = _tensor("IMAGE", np.ascontiguousarray(r.image, np.uint8), "UINT8")
        inputs = [
            image,
            _tensor("SCORE_THRESHOLD", np.array([r.score_threshold], np.float32), "FP32"),
            _tensor("MAX_PERSONS", np.array([r.max_persons], np.int32), "INT32"),
        ]
        if r.detector is not None:
            inputs += _model("DETECTOR", r.detector)
        if r.pose is not None:
            inputs += _model("POSE_MODEL", r.pose)
        if r.boxes is not None:
            inputs.append(_tensor("BOXES", np.asarray(r.boxes, np.float32).reshape(-1, 5), "FP32"))
        if r.tracks is not None and r.track_thresholds is not None and len(r.tracks):
            inputs.append(_tensor("TRACKS", np.ascontiguousarray(r.tracks, np.float32), "FP32"))
            thresholds = np.array(r.track_thresholds, np.float32)
            inputs.append(_tensor("TRACK_THRESHOLDS", thresholds, "FP32"))
        result = await self._call(
            self._client.infer(r.model, inputs, client_timeout=r.timeout_s or self.timeout_s)
        )
        return PipelineResult(
            boxes=result.as_numpy("PERSON_BOXES").reshape(-1, 5),
            keypoints=result.as_numpy("KEYPOINTS"),
            stage_ms=result.as_numpy("STAGE_MS"),
            owner=result.as_numpy("TRACK_OWNER").reshape(-1),
            continued=result.as_numpy("CONTINUED").reshape(-1),
        )

    async def server_live(self) -> bool:
        """Triton answers. Not ``is_server_ready``: under ``--strict-readiness`` any version
        still loading (a registration, minutes of TensorRT engine building) turns it false
        while the serving versions answer; readiness asks for those by name instead."""
        try:
            return bool(await self._call(self._client.is_server_live(client_timeout=2)))
        except (TritonUnavailable, TritonError):
            return False

    async def model_ready(self, name: str, version: int | None = None) -> bool:
        try:
            v = "" if version is None else str(version)
            return bool(await self._call(self._client.is_model_ready(name, v, client_timeout=2)))
        except (TritonUnavailable, TritonError):
            return False
