"""Async gRPC client for the Triton pose pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from service.repository.configs import PIPELINE_MODEL


class TritonUnavailable(RuntimeError):
    """Triton cannot be reached (or is not ready): the caller should answer 503."""


class InferenceFailed(RuntimeError):
    """Triton answered with an error for this request."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int


@dataclass(frozen=True)
class PipelineResult:
    boxes: np.ndarray  # (P, 5) x1, y1, x2, y2, score
    keypoints: np.ndarray  # (P, K, 3) x, y, score
    stage_ms: np.ndarray  # (4,) preprocess, detector, pose, postprocess


_UNAVAILABLE = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"}


def _tensor(name: str, value: np.ndarray, datatype: str) -> grpcclient.InferInput:
    t = grpcclient.InferInput(name, list(value.shape), datatype)
    t.set_data_from_numpy(value)
    return t


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
            raise InferenceFailed(exc.message() or str(exc)) from exc
        except (grpc.RpcError, ConnectionError, OSError) as exc:
            raise TritonUnavailable(f"Triton at {self.url}: {exc}") from exc

    async def infer(
        self,
        image: np.ndarray,
        detector: ModelRef,
        pose: ModelRef | None,
        score_threshold: float,
        max_persons: int,
        boxes: np.ndarray | None = None,
    ) -> PipelineResult:
        inputs = [
            _tensor("IMAGE", np.ascontiguousarray(image, np.uint8), "UINT8"),
            _tensor("DETECTOR", np.array([detector.name.encode()], object), "BYTES"),
            _tensor("DETECTOR_VERSION", np.array([detector.version], np.int64), "INT64"),
            _tensor("SCORE_THRESHOLD", np.array([score_threshold], np.float32), "FP32"),
            _tensor("MAX_PERSONS", np.array([max_persons], np.int32), "INT32"),
        ]
        if pose is not None:  # without a pose model only the detector runs
            inputs += [
                _tensor("POSE_MODEL", np.array([pose.name.encode()], object), "BYTES"),
                _tensor("POSE_VERSION", np.array([pose.version], np.int64), "INT64"),
            ]
        if boxes is not None:
            inputs.append(_tensor("BOXES", np.asarray(boxes, np.float32).reshape(-1, 5), "FP32"))
        result = await self._call(
            self._client.infer(PIPELINE_MODEL, inputs, client_timeout=self.timeout_s)
        )
        return PipelineResult(
            boxes=result.as_numpy("PERSON_BOXES").reshape(-1, 5),
            keypoints=result.as_numpy("KEYPOINTS"),
            stage_ms=result.as_numpy("STAGE_MS"),
        )

    async def server_ready(self) -> bool:
        try:
            return bool(await self._call(self._client.is_server_ready(client_timeout=2)))
        except (TritonUnavailable, InferenceFailed):
            return False

    async def model_ready(self, name: str, version: int | None = None) -> bool:
        try:
            v = "" if version is None else str(version)
            return bool(await self._call(self._client.is_model_ready(name, v, client_timeout=2)))
        except (TritonUnavailable, InferenceFailed):
            return False
