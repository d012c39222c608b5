"""``rtmserve models ...`` against a running service, as an operator runs it."""

from __future__ import annotations

import os
import subprocess

from rtmserve.launch import RTMSERVE, ServiceProcess


def models_cli(
    svc: ServiceProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    cmd = [RTMSERVE, "models", *args, "--home", str(svc.home), "--triton-http", svc.triton_http]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})  # fmt: skip
