"""``rtmserve models ...`` against a running service, as an operator runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rtmserve.launch import RTMSERVE, ServiceProcess
from tests.support.paths import REPO

SHIPPED = REPO / "models" / "rtmserve-pose-n" / "model.onnx"


def models_cli(
    svc: ServiceProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    cmd = [RTMSERVE, "models", *args, "--home", str(svc.home), "--triton-http", svc.triton_http]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})  # fmt: skip


def register_shipped_copy(svc: ServiceProcess, name: str, folder: Path) -> Path:
    """A model of its own in ``svc``'s repository: the shipped ONNX registered as ``name`` v1
    (loaded and serving). Returns the copy, to register again as later versions."""
    onnx = folder / "model.onnx"
    shutil.copyfile(SHIPPED, onnx)
    r = models_cli(svc, "register", name, str(onnx), "--like", "rtmpose-m")
    assert r.returncode == 0, r.stdout + r.stderr
    return onnx
