"""Shared fixtures: paths to the shared data/models and a real ``rtmserve serve`` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RTMSERVE_SHARED", REPO.parent / "shared"))
MODELS_MIRROR = SHARED / "models"
COCO_VAL = SHARED / "data" / "coco_val_subset"
RTMSERVE = str(Path(sys.executable).parent / "rtmserve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``condition`` (a readiness probe, not a fixed sleep) until true or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class ServiceProcess:
    proc: subprocess.Popen
    home: Path
    http: str
    grpc_port: int
    triton_http: str
    triton_grpc_port: int
    triton_metrics: str
    log: Path

    @property
    def repository(self) -> Path:
        return self.home / "repository"

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def start_service(home: Path, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
    """Start ``rtmserve serve`` exactly as the README does, on free ports."""
    ports = {k: free_port() for k in ("http", "grpc", "t_http", "t_grpc", "t_metrics")}
    env = {
        **os.environ,
        "RTMSERVE_HOME": str(home),
        "RTMSERVE_MODEL_MIRROR": str(MODELS_MIRROR),
        "RTMSERVE_OFFLINE": "1",
        "RTMSERVE_HOST": "127.0.0.1",
        "RTMSERVE_HTTP_PORT": str(ports["http"]),
        "RTMSERVE_GRPC_PORT": str(ports["grpc"]),
        "RTMSERVE_TRITON_HTTP_PORT": str(ports["t_http"]),
        "RTMSERVE_TRITON_GRPC_PORT": str(ports["t_grpc"]),
        "RTMSERVE_TRITON_METRICS_PORT": str(ports["t_metrics"]),
        **(extra_env or {}),
    }
    home.mkdir(parents=True, exist_ok=True)
    log = home / "serve.log"
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([RTMSERVE, "serve", *args], env=env, stdout=out, stderr=out)
    svc = ServiceProcess(
        proc,
        home,
        f"http://127.0.0.1:{ports['http']}",
        ports["grpc"],
        f"http://127.0.0.1:{ports['t_http']}",
        ports["t_grpc"],
        f"http://127.0.0.1:{ports['t_metrics']}",
        log,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"rtmserve exited with {proc.returncode}:\n{svc.log_tail()}")
        try:
            return httpx.get(f"{svc.http}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 600, "rtmserve to become ready")
    except BaseException:
        stop_service(svc)
        raise
    return svc


def stop_service(svc: ServiceProcess, timeout: float = 60) -> int:
    if svc.proc.poll() is None:
        svc.proc.send_signal(signal.SIGTERM)
        try:
            svc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            svc.proc.kill()
            svc.proc.wait()
    return svc.proc.returncode


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Iterator[ServiceProcess]:
    """One real service (embedded Triton, real detector, seeded RTMPose-m) for the session."""
    svc = start_service(
        tmp_path_factory.mktemp("rtmserve-home"),
        {
            "RTMSERVE_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
            "RTMSERVE_MAX_IMAGE_PIXELS": "25000000",
        },
    )
    yield svc
    code = stop_service(svc)
    assert code == 0, f"rtmserve exited with {code} on SIGTERM:\n{svc.log_tail()}"


@pytest.fixture(scope="session")
def coco_images() -> list[Path]:
    images = sorted((COCO_VAL / "images").glob("*.jpg"))
    assert len(images) == 110, f"expected the 110-image COCO subset in {COCO_VAL}"
    return images
