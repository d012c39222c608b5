"""Shared fixtures: paths to the shared data/models and a real ``rtmserve serve`` process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtmserve.launch import ServiceProcess, start_service
from tests.support.paths import COCO_VAL, MODELS_MIRROR, REPO

IDLE_TIMEOUT_S = 5


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Iterator[ServiceProcess]:
    """One real service (embedded Triton, the real detector) for the session, serving RTMPose-m
    as an untrained seeded export: official RTMPose weights cannot be had here, and random
    weights make the fidelity comparison with the SDK hard (many near-ties) and the labelling
    of untrained models testable. ``default_service`` runs the README's plain command."""
    svc = start_service(
        tmp_path_factory.mktemp("rtmserve-home"),
        MODELS_MIRROR,
        {
            "RTMSERVE_POSE_MODEL": "rtmpose-m",
            "RTMSERVE_ALLOW_UNTRAINED": "1",
            "RTMSERVE_MAX_UPLOAD_BYTES": str(8 << 20),
            "RTMSERVE_MAX_IMAGE_PIXELS": "25000000",
            # video limits the tests reach cheaply; the arm-wrestling clip (280 frames, 10 s,
            # 0.6 MB) stays under them
            "RTMSERVE_MAX_VIDEO_BYTES": str(4 << 20),
            "RTMSERVE_MAX_VIDEO_FRAMES": "300",
            "RTMSERVE_MAX_VIDEO_SECONDS": "60",
            "RTMSERVE_DEBUG_ENDPOINTS": "1",  # /debug/runtime: what a stream leaves behind
            "RTMSERVE_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),  # slow clients, cut off sooner
        },
    )
    yield svc
    code = svc.stop()
    assert code == 0, f"rtmserve exited with {code} on SIGTERM:\n{svc.log_tail()}"


@pytest.fixture(scope="session")
def coco_images() -> list[Path]:
    images = sorted((COCO_VAL / "images").glob("*.jpg"))
    assert len(images) == 110, f"expected the 110-image COCO subset in {COCO_VAL}"
    return images


@pytest.fixture(scope="session")
def default_service(tmp_path_factory) -> Iterator[ServiceProcess]:
    """``rtmserve serve`` exactly as the README runs it here: defaults, offline, the mirror."""
    svc = start_service(tmp_path_factory.mktemp("rtmserve-default-home"), MODELS_MIRROR)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


@pytest.fixture(scope="session")
def rtmo_onnx(tmp_path_factory) -> tuple[Path, dict]:
    """An RTMO-s-shaped export with seeded weights (``training.export_rtmo``, its CLI): the
    official I/O signature with a dynamic batch axis and the real network's compute."""
    out = tmp_path_factory.mktemp("rtmo") / "rtmo-s.onnx"
    cmd = [sys.executable, "-m", "training.export_rtmo", "--variant", "s", "--seed", "0",
           "--output", str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, json.loads(run.stdout)
