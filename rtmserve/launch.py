"""Start ``rtmserve serve`` as a child process on free ports and wait until it is ready.

The tests and the benchmarks run the service exactly as a user does (the same command the
README and the Dockerfile run), as a separate process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

RTMSERVE = str(Path(sys.executable).parent / "rtmserve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a readiness probe until it holds (not a fixed sleep) or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop_process(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM (a clean shutdown), then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_http_ready(
    proc: subprocess.Popen, url: str, timeout: float, what: str, log: Callable[[], str]
) -> None:
    """Poll ``url`` until it answers 200; fail at once, with the log, if ``proc`` exits."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log()}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout, f"{what} to become ready")


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

    @property
    def ports(self) -> dict[str, int]:
        """What ``start_service(ports=...)`` takes to start it again where it was."""
        port = lambda url: int(url.rsplit(":", 1)[1])  # noqa: E731
        return {
            "http": port(self.http),
            "grpc": self.grpc_port,
            "t_http": port(self.triton_http),
            "t_grpc": self.triton_grpc_port,
            "t_metrics": port(self.triton_metrics),
        }

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 60) -> int:
        return stop_process(self.proc, timeout)

    def ready(self) -> bool:
        """``/readyz`` answers 200 (False while down, or on no answer)."""
        try:
            return httpx.get(f"{self.http}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


def start_service(
    home: Path,
    mirror: Path | None = None,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 600,
    ready_path: str = "/readyz",
    ports: dict[str, int] | None = None,
) -> ServiceProcess:
    """``ready_path`` is polled until it answers 200 (``/healthz`` when Triton is not up yet);
    ``ports`` (http, grpc, t_http, t_grpc, t_metrics) restart a service where it was."""
    svc = spawn_service(home, mirror, extra_env, args, ports)
    try:
        wait_http_ready(svc.proc, f"{svc.http}{ready_path}", timeout, "rtmserve", svc.log_tail)
    except BaseException:
        svc.stop()
        raise
    return svc


def spawn_service(
    home: Path,
    mirror: Path | None = None,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    ports: dict[str, int] | None = None,
    append_log: bool = False,
) -> ServiceProcess:
    """``rtmserve serve`` started, not waited for (a supervisor polls it, and can stop it
    meanwhile); ``append_log``: keep what ``home/serve.log`` says of earlier runs."""
    ports = ports or {k: free_port() for k in ("http", "grpc", "t_http", "t_grpc", "t_metrics")}
    env = {
        **os.environ,
        "RTMSERVE_HOME": str(home),
        "RTMSERVE_OFFLINE": "1",
        "RTMSERVE_HOST": "127.0.0.1",
        "RTMSERVE_HTTP_PORT": str(ports["http"]),
        "RTMSERVE_GRPC_PORT": str(ports["grpc"]),
        "RTMSERVE_TRITON_HTTP_PORT": str(ports["t_http"]),
        "RTMSERVE_TRITON_GRPC_PORT": str(ports["t_grpc"]),
        "RTMSERVE_TRITON_METRICS_PORT": str(ports["t_metrics"]),
        **({"RTMSERVE_MODEL_MIRROR": str(mirror)} if mirror else {}),
        **(extra_env or {}),
    }
    home.mkdir(parents=True, exist_ok=True)
    log = home / "serve.log"
    # the child keeps its own copy of the descriptor
    with open(log, "ab" if append_log else "wb") as out:
        proc = subprocess.Popen([RTMSERVE, "serve", *args], env=env, stdout=out, stderr=out)
    return ServiceProcess(
        proc,
        home,
        f"http://127.0.0.1:{ports['http']}",
        ports["grpc"],
        f"http://127.0.0.1:{ports['t_http']}",
        ports["t_grpc"],
        f"http://127.0.0.1:{ports['t_metrics']}",
        log,
    )
