"""Run the tritonserver binary shipped in the nvidia-pytriton wheel as a supervised child.

That wheel holds a real Triton (Python backend only). It needs its bundled shared libraries on
``LD_LIBRARY_PATH`` and a backend folder holding the Python-backend stub built for the running
interpreter; the stub then runs the repository's ``model.py`` files with this environment's
packages (numpy, onnxruntime, service.core).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class TritonNotAvailable(RuntimeError):
    pass


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def _pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotAvailable(
            "the embedded Triton needs the nvidia-pytriton wheel (Linux x86_64): "
            "pip install 'rtmserve[serve]', or point --triton-url at a running Triton"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def find_tritonserver() -> tuple[Path, Path, Path]:
    """(binary, shared-library folder, backends folder) of the bundled tritonserver."""
    root = _pytriton_dir()
    binary = root / "tritonserver" / "bin" / "tritonserver"
    libs = root.parent / "nvidia_pytriton.libs"
    if not binary.exists() or not libs.is_dir():
        raise TritonNotAvailable(f"tritonserver not found under {root}")
    return binary, libs, root / "tritonserver"


def prepare_backends(work_dir: Path) -> Path:
    """Copy the Python backend and the stub for this interpreter into a writable folder."""
    _, _, triton = find_tritonserver()
    target = work_dir / "backends"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonNotAvailable(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    shutil.copytree(triton / "backends", target, dirs_exist_ok=True)
    shutil.copy2(stub, target / "python" / "triton_python_backend_stub")
    return target


def _child_env(libs: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
    # The stub runs model.py with the interpreter found on PATH: make it this one.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    source_root = str(Path(__file__).resolve().parents[2])
    site = sysconfig.get_paths()["purelib"]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, site, env.get("PYTHONPATH")]))
    return env


def _die_with_parent() -> None:
    """Linux: SIGTERM the child if this process dies, so no tritonserver is ever orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()


class EmbeddedTriton:
    """Starts tritonserver, restarts it if it dies, and stops it with its process group."""

    def __init__(
        self,
        repository: Path,
        work_dir: Path,
        ports: TritonPorts = TritonPorts(),
        log_file: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.repository = Path(repository)
        self.work_dir = Path(work_dir)
        self.ports = ports
        self.log_file = log_file or self.work_dir / "tritonserver.log"
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"localhost:{self.ports.grpc}"

    def command(self, backends: Path) -> list[str]:
        binary, _, _ = find_tritonserver()
        return [
            str(binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-gpu-metrics=false",
            "--model-control-mode=explicit",
            "--load-model=*",
            "--strict-readiness=true",
            "--exit-on-error=false",
            "--log-verbose=0",
            *self.extra_args,
        ]

    def _spawn(self) -> subprocess.Popen[bytes]:
        _, libs, _ = find_tritonserver()
        backends = prepare_backends(self.work_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        log.info("starting tritonserver (log: %s)", self.log_file)
        return subprocess.Popen(
            self.command(backends),
            env=_child_env(libs),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._proc = self._spawn()
        self._supervisor = threading.Thread(
            target=self._supervise, name="triton-supervisor", daemon=True
        )
        self._supervisor.start()

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            log.error("tritonserver exited with %s; restarting in %.0fs", code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            self._proc = self._spawn()
            self.restarts += 1

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ready(self) -> bool:
        try:
            url = f"http://localhost:{self.ports.http}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Block until Triton and every model in the repository is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if self._proc is not None and self._proc.poll() is not None and self.restarts > 3:
                break
            time.sleep(0.25)
        raise TritonNotAvailable(
            f"tritonserver did not become ready within {timeout:.0f}s; see {self.log_file}:\n"
            + _tail(self.log_file)
        )

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
