"""Supervision for ``rtmserve fleet``: what Kubernetes does for pods, for the one-machine fleet.

A replica (gateway + its embedded Triton) that dies is restarted on its ports after a backoff
that doubles while it keeps dying (a crash loop slows down instead of spinning; the other
replicas keep serving), and Envoy rejoins it once its health checks pass. Envoy itself is
restarted at once on the same ports. Every event is logged (logger ``rtmserve.fleet``) and
counted on the fleet's own Prometheus endpoint (``FleetMetrics``).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from service.triton.embedded import kill_group

from .launch import ServiceProcess

log = logging.getLogger("rtmserve.fleet")


@dataclass(frozen=True)
class Backoff:
    """The wait before restarting something that died: ``base_s``, doubled at each death or
    failed start in a row, at most ``cap_s``. A process that stayed up ``stable_s`` starts the
    schedule again, so a rare death costs ``base_s`` and a crash loop ends up at one try per
    ``cap_s``. Envoy's first death in a row is restarted at once."""

    base_s: float = 1.0
    cap_s: float = 60.0
    stable_s: float = 30.0
    start_timeout_s: float = 300.0  # a replica not ready by then is killed: a failed start

    def delay(self, failures: int) -> float:
        """Seconds before the next start after ``failures`` (>= 1) deaths in a row."""
        return min(self.cap_s, self.base_s * 2 ** (failures - 1))


# Envoy starts in well under a second and holds no state: up 10 s, its next death is restarted
# at once again
ENVOY_BACKOFF = Backoff(base_s=0.5, cap_s=30.0, stable_s=10.0)


class FleetMetrics:
    """The supervisor's counters on a registry of its own, served on ``--metrics-port``."""

    def __init__(self, replicas: int) -> None:
        self.registry = CollectorRegistry()
        kw = {"registry": self.registry}
        self.up = Gauge("rtmserve_fleet_replica_up", "1 while the replica runs (it answered "
                        "/readyz since its last start), 0 while it is down", ["replica"],
                        **kw)  # fmt: skip
        self.restarts = Counter("rtmserve_fleet_replica_restarts", "start attempts after a "
                                "death, failed ones included", ["replica"], **kw)  # fmt: skip
        self.failed = Counter("rtmserve_fleet_replica_failed_starts", "starts that exited or "
                              "timed out before /readyz answered", ["replica"], **kw)  # fmt: skip
        self.delay = Gauge("rtmserve_fleet_replica_restart_delay_seconds", "the backoff before "
                           "the replica's next start (grows in a crash loop), 0 while it is up",
                           ["replica"], **kw)  # fmt: skip
        self.balancer_up = Gauge("rtmserve_fleet_balancer_up", "1 while Envoy runs", **kw)
        self.balancer_restarts = Counter("rtmserve_fleet_balancer_restarts", "Envoy restarts",
                                         **kw)  # fmt: skip
        for i in range(replicas):
            for family in (self.up, self.restarts, self.failed, self.delay):
                family.labels(replica=str(i))
        self._server = None

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        self._server, _ = start_http_server(port, host, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class Supervised(Protocol):
    """What the supervisor needs of a fleet (``rtmserve.fleet.Fleet``)."""

    replicas: list[ServiceProcess]
    envoy: subprocess.Popen

    def spawn_replica(self, i: int) -> ServiceProcess: ...
    def spawn_envoy(self) -> subprocess.Popen: ...
    def envoy_ready(self) -> bool: ...


def children_of(pid: int) -> set[int]:
    """Direct children of ``pid`` (the gateway's: its tritonserver, leader of its own group)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out.update(int(c) for c in (task / "children").read_text().split())
    return out


class Supervisor:
    """A thread per replica and one for Envoy, from ``start`` until ``stop_watching``."""

    def __init__(self, fleet: Supervised, backoff: Backoff, metrics: FleetMetrics,
                 envoy_backoff: Backoff = ENVOY_BACKOFF, poll_s: float = 0.2) -> None:  # fmt: skip
        self.fleet, self.backoff, self.metrics, self.poll_s = fleet, backoff, metrics, poll_s
        self.envoy_backoff = envoy_backoff
        self._stopping = threading.Event()
        self._replica_threads = [
            threading.Thread(target=self._replica, args=(i,), name=f"fleet-replica-{i}",
                             daemon=True) for i in range(len(fleet.replicas))
        ]  # fmt: skip
        self._envoy_thread = threading.Thread(target=self._envoy, name="fleet-envoy", daemon=True)

    def start(self) -> None:
        for i in range(len(self.fleet.replicas)):
            self.metrics.up.labels(replica=str(i)).set(1)
        self.metrics.balancer_up.set(1)
        for t in [*self._replica_threads, self._envoy_thread]:
            t.start()

    def stop_watching(self) -> None:
        """No more restarts (before the fleet stops its processes); waits for the replica
        threads, which spawn nothing once this returns."""
        self._stopping.set()
        for t in self._replica_threads:
            t.join(30)

    def join_envoy(self) -> None:
        self._envoy_thread.join(30)

    # a replica -----------------------------------------------------------------------------

    def _replica(self, i: int) -> None:
        try:
            self._supervise_replica(i)
        except Exception:  # logged, never silent: the fleet goes on without this replica
            log.exception("supervision of replica %d failed", i)

    def _supervise_replica(self, i: int) -> None:
        failures, up_since = 0, time.monotonic()
        while not self._stopping.is_set():
            replica = self.fleet.replicas[i]
            groups = self._watch(replica)
            if groups is None:
                return  # stopping
            code = replica.proc.returncode
            for pgid in groups:  # Triton got SIGTERM with its parent: its ports are needed now
                kill_group(pgid)
            failures = 1 if time.monotonic() - up_since >= self.backoff.stable_s else failures + 1
            self.metrics.up.labels(replica=str(i)).set(0)
            log.warning("replica %d (pid %d, %s) exited with code %s after %.1f s up; its "
                        "Triton group %s killed", i, replica.proc.pid, replica.http, code,
                        time.monotonic() - up_since, sorted(groups) or "gone")  # fmt: skip
            died = time.monotonic()
            failures = self._restart(i, failures)
            if failures is None:
                return
            up_since = time.monotonic()
            self.metrics.up.labels(replica=str(i)).set(1)
            self.metrics.delay.labels(replica=str(i)).set(0)
            log.warning("replica %d is back (pid %d) %.1f s after its death; Envoy sends it "
                        "traffic once its health check passes", i, self.fleet.replicas[i].proc.pid,
                        time.monotonic() - died)  # fmt: skip

    def _watch(self, replica: ServiceProcess) -> set[int] | None:
        """Wait for the replica's gateway to exit: its children's groups (Triton), or None
        when the supervisor stops first."""
        groups: set[int] = set()
        while replica.proc.poll() is None:
            groups |= children_of(replica.proc.pid)
            if self._stopping.wait(self.poll_s):
                return None
        return groups

    def _restart(self, i: int, failures: int) -> int | None:
        """Start attempts with growing delays until one is ready: the failure count then, or
        None when the supervisor stops first."""
        label = str(i)
        while True:
            delay = self.backoff.delay(failures)
            self.metrics.delay.labels(replica=label).set(delay)
            log.warning("replica %d: start attempt in %.1f s (%d failure(s) in a row)", i, delay,
                        failures)  # fmt: skip
            if self._stopping.wait(delay):
                return None
            self.metrics.restarts.labels(replica=label).inc()
            log.warning("replica %d: starting", i)
            replica = self.fleet.spawn_replica(i)
            self.fleet.replicas[i] = replica  # stopped with the fleet from now on
            outcome = self._ready(replica)
            if outcome is None:
                return None
            if outcome == "ready":
                return failures
            failures += 1
            self.metrics.failed.labels(replica=label).inc()
            log.error("replica %d failed to start (%s); its log %s ends:\n%s", i, outcome,
                      replica.log, replica.log_tail(8))  # fmt: skip

    def _ready(self, replica: ServiceProcess) -> str | None:
        """``"ready"``, why the start failed, or None when stopping."""
        deadline = time.monotonic() + self.backoff.start_timeout_s
        groups: set[int] = set()
        while not replica.ready():
            groups |= children_of(replica.proc.pid)
            if replica.proc.poll() is not None:
                for pgid in groups:  # a Triton it started: the next attempt needs its ports
                    kill_group(pgid)
                return f"exited with code {replica.proc.returncode}"
            if time.monotonic() > deadline:
                replica.stop(10)
                return f"not ready within {self.backoff.start_timeout_s:g} s"
            if self._stopping.wait(0.5):
                return None
        return "ready"

    # Envoy ----------------------------------------------------------------------------------

    def _envoy(self) -> None:
        try:
            self._supervise_envoy()
        except Exception:
            log.exception("supervision of Envoy failed")

    def _supervise_envoy(self) -> None:
        failures, backoff = 0, self.envoy_backoff
        while True:
            proc, up_since = self.fleet.envoy, time.monotonic()
            code = proc.wait()
            if self._stopping.wait(0.1):  # a Ctrl-C stops Envoy and the fleet at once
                return
            died = time.monotonic()
            self.metrics.balancer_up.set(0)
            failures = 1 if died - up_since >= backoff.stable_s else failures + 1
            delay = 0.0 if failures == 1 else backoff.delay(failures - 1)
            log.warning("Envoy (pid %d) exited with code %s after %.1f s up; restarting it "
                        "in %.1f s", proc.pid, code, died - up_since, delay)  # fmt: skip
            if self._stopping.wait(delay):
                return
            self.fleet.envoy = self.fleet.spawn_envoy()
            self.metrics.balancer_restarts.inc()
            while not self.fleet.envoy_ready():
                if self.fleet.envoy.poll() is not None or self._stopping.wait(0.05):
                    break
            else:
                self.metrics.balancer_up.set(1)
                log.warning("Envoy is back (pid %d) %.2f s after its death", self.fleet.envoy.pid,
                            time.monotonic() - died)  # fmt: skip
