"""The parts of the GPU path the embedded Triton can run: a pose export fixed at batch 1 served
end to end (equal to the same weights exported with a batch axis), and deep readiness that
fails while every model is loaded but inference does not work."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from rtmserve.launch import start_service, wait_until
from service.core.specs import PoseSpec
from service.metadata import read_record
from tests.support.cli import models_cli
from tests.support.paths import MODELS_MIRROR
from tests.support.synthetic import write_synthetic_pose_onnx

PHOTO = "000000196141.jpg"  # four people


@pytest.fixture(scope="module")
def gpu_path(tmp_path_factory):
    svc = start_service(tmp_path_factory.mktemp("gpu-path-home"), MODELS_MIRROR)
    yield svc
    assert svc.stop() == 0


def export(out, *extra: str) -> None:
    cmd = [sys.executable, "-m", "training.export", "--variant", "t", "--seed", "0",
           "--output", str(out), *extra]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]


def keypoints(svc, photo: bytes, model: str) -> np.ndarray:
    r = httpx.post(f"{svc.http}/v1/pose", content=photo, params={"pose_model": model}, timeout=60)
    assert r.status_code == 200, r.text
    kpts = [[[k["x"], k["y"], k["score"]] for k in p["keypoints"]] for p in r.json()["persons"]]
    return np.array(kpts)


def test_a_static_batch_export_serves_what_the_dynamic_one_does(gpu_path, tmp_path, coco_images):
    dynamic, static = tmp_path / "dynamic.onnx", tmp_path / "static.onnx"
    export(dynamic)
    export(static, "--static-batch")
    for name, onnx in (("pose-dynamic", dynamic), ("pose-static", static)):
        r = models_cli(gpu_path, "register", name, str(onnx), "--like", "rtmpose-t")
        assert r.returncode == 0, r.stderr
    spec = read_record(gpu_path.repository / "pose-static").parsed_spec
    assert spec.max_batch == 1  # served one crop at a time
    config = (gpu_path.repository / "pose-static" / "config.pbtxt").read_text()
    assert "max_batch_size" not in config  # 0, the protobuf default
    photo = next(p for p in coco_images if p.name == PHOTO).read_bytes()
    ours, theirs = (
        keypoints(gpu_path, photo, "pose-static"),
        keypoints(gpu_path, photo, "pose-dynamic"),
    )
    assert ours.shape == theirs.shape and len(ours) >= 3
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_readiness_runs_an_inference_and_fails_while_models_are_loaded_but_cannot_answer(
    gpu_path, tmp_path
):
    name = "rtmserve-pose-n"  # the default pose model here
    record = read_record(gpu_path.repository / name)
    spec = record.parsed_spec
    assert isinstance(spec, PoseSpec)
    broken = write_synthetic_pose_onnx(tmp_path / "broken.onnx", spec, fails_at_run=True)
    assert gpu_path.ready()
    r = models_cli(gpu_path, "register", name, str(broken), "--force")
    assert r.returncode == 0, r.stderr

    def readiness() -> dict:
        return httpx.get(f"{gpu_path.http}/readyz", timeout=30).json()

    wait_until(lambda: not readiness()["ready"], 30, "readiness to see the broken model")
    body = readiness()
    loaded = {k: v for k, v in body["models"].items() if k != "inference"}
    assert all(loaded.values()) and body["models"]["inference"] is False  # loaded, yet failing
    assert "inference check failed" in body["reason"]
    r = models_cli(gpu_path, "rollback", name, str(record.serving_version))
    assert r.returncode == 0, r.stderr
    wait_until(gpu_path.ready, 30, "readiness after the rollback")
    assert readiness()["models"]["inference"] is True
