"""A stand-in for the Triton pipeline client, for in-process tests of the HTTP and gRPC routes:
the error paths a real Triton cannot be made to take on demand (an inference error, a lost
server) and request plumbing without processes. Everything else about the service is real."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.app.context import Services
from service.core.image import decode
from service.core.specs import DetectorSpec, PoseSpec
from service.metadata import ModelRecord, write_defaults, write_record
from service.settings import Settings
from service.triton.client import PipelineRequest, PipelineResult, TritonError, TritonUnavailable

DETECTOR, POSE = "rtmdet-nano", "rtmpose-m"


@dataclass
class FakePipeline:
    """Answers one person covering the image's centre, or fails as ``fail`` says."""

    url: str = "fake:0"
    fail: str | None = None  # "unavailable" (Triton gone) or "error" (Triton refuses)
    ready: bool = True
    calls: list[PipelineRequest] = field(default_factory=list)

    async def infer(self, request: PipelineRequest) -> PipelineResult:
        self.calls.append(request)
        if self.fail == "unavailable":
            raise TritonUnavailable(f"Triton at {self.url}: connection refused")
        if self.fail == "error":
            raise TritonError("pose v1: onnxruntime: bad input")
        image = request.image  # an encoded file is decoded as the pipeline model does
        h, w = (decode(image) if isinstance(image, bytes) else image).shape[:2]
        found = np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4, 0.9]], np.float32)
        boxes = request.boxes
        person = found if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 5)
        k = 17 if request.pose is not None else 0
        keypoints = np.tile([w / 2, h / 2, 0.8], (len(person), k, 1)).astype(np.float32)
        owner = np.full(len(found), -1, np.int32) if boxes is None else np.zeros(0, np.int32)
        return PipelineResult(
            person, keypoints, np.ones(4, np.float32), owner, np.zeros(0, np.int32)
        )

    async def server_live(self) -> bool:
        return self.ready

    async def model_ready(self, name: str, version: int | None = None) -> bool:
        return self.ready

    async def close(self) -> None:
        pass


def fake_services(home: Path, pipeline: FakePipeline, **settings) -> Services:
    """Services over a runtime repository holding the two default models' records only."""
    s = Settings(home=home, **settings)
    repo = s.repository_dir
    for name, spec in ((DETECTOR, DetectorSpec()), (POSE, PoseSpec())):
        (repo / name).mkdir(parents=True, exist_ok=True)
        meta = {1: {"trained": True, "state": "served"}}
        write_record(repo / name, ModelRecord(name, spec.kind, spec.to_dict(), 1, meta))
    write_defaults(repo, detector=DETECTOR, pose_model=POSE)
    return Services.create(s, pipeline)
