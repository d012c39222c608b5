"""Run the tritonserver binary shipped in the nvidia-pytriton wheel as a supervised child.

That wheel holds a real Triton (Python backend only). It needs its bundled shared libraries on
``LD_LIBRARY_PATH`` and a backend folder holding the Python-backend stub built for the running
interpreter; the stub then runs the repository's ``model.py`` files with this environment's
packages (numpy, onnxruntime, service.core).

Supervision: tritonserver leads its own process group, which its Python-backend stubs inherit.
Whenever it exits, for any reason, the whole group is killed and reaped before a new server
starts (orphaned stubs would keep running, and keep the stub binary busy); the backends are
copied once per supervisor, never while a stub may run them; the supervisor thread logs and
retries with a capped backoff, so no exception can end it. Triton's HTTP and gRPC ports listen
on loopback only: model control must not face the network. Only the metrics port may, when
``metrics_host`` says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36


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
    """Copy the Python backend and the stub for this interpreter into a writable folder.

    Files already there with the same size are left alone: a stub still running from an
    earlier server (``Text file busy``) must not be overwritten."""
    _, _, triton = find_tritonserver()
    target = work_dir / "backends"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonNotAvailable(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    pairs = [
        (f, target / f.relative_to(triton / "backends")) for f in (triton / "backends").rglob("*")
    ]
    pairs.append((stub, target / "python" / "triton_python_backend_stub"))
    for src, dst in pairs:
        if src.is_dir():
            continue
        if dst.exists() and dst.stat().st_size == src.stat().st_size:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return target


# Never handed to tritonserver and its model stubs: the API keys, TLS material and anything
# named like a credential (a model's code runs there, and its environment is readable by it).
SECRET_ENV = re.compile(
    r"(?i)^RTMSERVE_(API_KEYS|TLS_)|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|API_?KEY"
)


def _child_env(libs: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not SECRET_ENV.search(k)}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(libs), env.get("LD_LIBRARY_PATH")]))
    # The stub runs model.py with the interpreter found on PATH: make it this one.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    source_root = str(Path(__file__).resolve().parents[2])
    site = sysconfig.get_paths()["purelib"]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, site, env.get("PYTHONPATH")]))
    return env


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such guarantees
        ctypes.CDLL("libc.so.6").prctl(option, value)


def _own_group_dying_with_parent() -> None:
    """In the child: SIGTERM it if this process dies (no tritonserver is ever orphaned), and
    lead a process group of its own (the stubs join it)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()


def _group(pgid: int) -> dict[int, str]:
    """{pid: state letter} of the processes of group ``pgid``, from /proc."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid:
            members[int(stat.parent.name)] = fields[0]
    return members


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    return [pid for pid, state in _group(pgid).items() if state != "Z"]


def _stub_model(pid: int, repository: Path) -> str | None:
    """The model a Python-backend stub runs: its first argument is <repository>/<model>/..."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if len(argv) < 2 or not argv[0].endswith(b"triton_python_backend_stub"):
        return None
    try:
        return Path(argv[1].decode()).relative_to(repository).parts[0]
    except ValueError:
        return None


def kill_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGKILL every process of the group and wait until none is left, reaping those that were
    handed to this process (a child subreaper, see ``EmbeddedTriton.start``)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        while True:  # reap what is ours
            try:
                pid, _ = os.waitpid(-pgid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not group_members(pgid):
            return
        if time.monotonic() > deadline:
            log.error("processes of group %d survived SIGKILL: %s", pgid, group_members(pgid))
            return
        time.sleep(0.05)


class EmbeddedTriton:
    """Starts tritonserver, restarts it if it dies, and stops it with its process group.

    ``on_exit(code)`` is called each time the server exits unasked (for metrics)."""

    def __init__(
        self,
        repository: Path,
        work_dir: Path,
        ports: TritonPorts = TritonPorts(),
        log_file: Path | None = None,
        extra_args: tuple[str, ...] = (),
        metrics_host: str = LOOPBACK,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.repository = Path(repository)
        self.work_dir = Path(work_dir)
        self.ports = ports
        self.log_file = log_file or self.work_dir / "tritonserver.log"
        self.extra_args = extra_args
        self.metrics_host = metrics_host
        self.on_exit = on_exit
        self._proc: subprocess.Popen[bytes] | None = None
        self._backends: Path | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.restarts = 0
        self.last_exit_code: int | None = None
        self._stubs: dict[int, str] = {}  # live stubs at the last look: pid -> model

    @property
    def url(self) -> str:
        return f"{LOOPBACK}:{self.ports.grpc}"

    def command(self, backends: Path) -> list[str]:
        binary, _, _ = find_tritonserver()
        return [
            str(binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--http-address={LOOPBACK}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.metrics_host}",
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
        assert self._backends is not None
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:  # the child keeps its own descriptor
            log.info("starting tritonserver (log: %s)", self.log_file)
            return subprocess.Popen(
                self.command(self._backends),
                env=_child_env(libs),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_own_group_dying_with_parent,
            )

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # orphaned stubs of a dead server are handed to this process, which reaps them (in a
        # container this process may be PID 1, where nobody else would)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self._backends = self._backends or prepare_backends(self.work_dir)
        self._stopping.clear()
        self._proc = self._spawn()
        self._supervisor = threading.Thread(
            target=self._supervise, name="triton-supervisor", daemon=True
        )
        self._supervisor.start()

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                started = time.monotonic()
                proc = self._proc
                code = proc.wait() if proc is not None else -1
                if proc is not None:
                    kill_group(proc.pid)
                if self._stopping.is_set():
                    return
                self.last_exit_code = code
                log.error("tritonserver exited with %s; restarting in %.0fs", code, backoff)
                if self.on_exit is not None:
                    self.on_exit(code)
                if self._stopping.wait(backoff):
                    return
                backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
                self._proc = self._spawn()
                self.restarts += 1
            except Exception:  # the supervisor must outlive anything: log, back off, go on
                log.exception("tritonserver supervision failed; retrying in %.0fs", backoff)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)

    def dead_stubs(self) -> set[str]:
        """Models with a stub that died since the last call. Triton 2.51 reaps no stub: a
        crashed one and one it replaced on a reload both stay zombies, so whoever reloads a
        model calls ``forget_stubs`` for it (a reload by someone else reads as one crash)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._stubs = {}
            return set()
        members = _group(proc.pid)
        dead = {model for pid, model in self._stubs.items() if members.get(pid) == "Z"}
        live = {pid for pid, state in members.items() if state != "Z"}
        known = {pid: m for pid, m in self._stubs.items() if pid in live}
        new = (p for p in live - known.keys() if p != proc.pid)
        self._stubs = known | {p: m for p in new if (m := _stub_model(p, self.repository))}
        return dead

    def forget_stubs(self, model: str) -> None:
        """``model`` was reloaded: its stubs known so far are gone on purpose."""
        self._stubs = {pid: m for pid, m in self._stubs.items() if m != model}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ready(self) -> bool:
        try:
            url = f"http://{LOOPBACK}:{self.ports.http}/v2/health/ready"
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
        """SIGTERM (Triton unloads its models and stops its stubs), then SIGKILL the group."""
        self._stopping.set()
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        kill_group(proc.pid)
        proc.wait()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
