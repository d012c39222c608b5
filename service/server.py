"""``rtmserve serve``: prepare the repository, start Triton (unless external), serve HTTP and
gRPC from one asyncio loop with one ``Services``.

On SIGINT/SIGTERM both servers stop accepting at once (readiness and gRPC health turn
NOT_SERVING), requests and streams in progress get ``shutdown_grace_s`` to finish (streams
still open then end with UNAVAILABLE, or a last NDJSON error line), then Triton stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import signal
from collections.abc import Iterator

import uvicorn

from service.app.access import AccessControl
from service.app.context import Services
from service.grpc.server import GrpcServer
from service.http.app import create_app
from service.http.connection import uvicorn_limits
from service.logs import RedactSecrets, uvicorn_log_config
from service.metrics.families import MODEL_RELOADS, TRITON_EXIT_CODE, TRITON_RESTARTS
from service.prepare import Fallbacks, prepare_repository
from service.settings import Settings
from service.triton.client import PipelineClient
from service.triton.embedded import EmbeddedTriton, TritonPorts
from service.triton.keeper import ModelKeeper
from service.triton.peers import resolve_peers

log = logging.getLogger("rtmserve")
M_ARENA_MAX = -8  # glibc's mallopt parameter


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after shutting down, which would end the process before
    Triton is stopped; here a signal only asks the server to exit (and tells ``on_exit``, so
    gRPC stops at the same time) and ``serve`` cleans up."""

    on_exit = staticmethod(lambda: None)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:  # type: ignore[no-untyped-def]
        super().handle_exit(sig, frame)
        self.on_exit()


def _triton_exited(code: int) -> None:
    TRITON_RESTARTS.inc()
    TRITON_EXIT_CODE.set(code)


def embedded_triton(settings: Settings) -> EmbeddedTriton:
    ports = TritonPorts(
        settings.triton_http_port, settings.triton_grpc_port, settings.triton_metrics_port
    )
    return EmbeddedTriton(
        settings.repository_dir,
        settings.home / "triton",
        ports,
        metrics_host=settings.triton_metrics_host,
        on_exit=_triton_exited,
    )


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def exposure_problem(settings: Settings, access: AccessControl) -> str | None:
    """Why serving as configured is refused (an address others reach, no keys, no explicit
    ``insecure``), else None; with ``insecure`` it says so loudly and goes on."""
    if is_loopback(settings.host) or access.enabled:
        return None
    if settings.insecure:
        log.warning(
            "INSECURE: serving on %s without API keys (--insecure / RTMSERVE_INSECURE): anyone "
            "who reaches this address can use the service and its capacity",
            settings.host,
        )
        return None
    return (
        f"refusing to serve on {settings.host} without API keys: set RTMSERVE_API_KEYS or "
        "RTMSERVE_API_KEYS_FILE (name:key, keys of 16+ characters), serve on 127.0.0.1, or "
        "pass --insecure (RTMSERVE_INSECURE=1) to serve it open on purpose"
    )


def cap_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that contends for the heap an arena of its own and rarely
    returns their memory: under sustained load (decoding in a thread pool) the gateway's RSS
    grew 197 -> 309 MB in two minutes, and stays at ~230 MB with two arenas (the same as
    ``MALLOC_ARENA_MAX=2``, set before any thread starts)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)


def serve(settings: Settings, prepare: bool = True, fallbacks: Fallbacks | None = None) -> int:
    """``fallbacks``: what ``prepare`` may use when official weights cannot be had."""
    cap_malloc_arenas()
    try:  # checked before anything starts: a bad key configuration never serves
        access = AccessControl.from_settings(settings)
    except (OSError, ValueError) as exc:
        log.error("API keys: %s", exc)
        return 2
    RedactSecrets.add_secrets(key for _, key in access.keys)  # wherever a log line shows one
    problem = exposure_problem(settings, access)
    if problem:
        log.error("%s", problem)
        return 2
    if prepare:
        report = prepare_repository(settings, fallbacks)
        for line in report.installed:
            log.info("installed %s", line)
        for line in report.warnings:
            log.warning("%s", line)
    triton = None if settings.triton_url else embedded_triton(settings)
    try:
        if triton is not None:
            triton.start()
            log.info("waiting for tritonserver and its models (log: %s)", triton.log_file)
            triton.wait_ready()
            log.info("tritonserver ready on grpc %s", triton.url)
        loop_factory = uvicorn.Config(  # uvicorn's choice (uvloop)
            app=None, log_config=uvicorn_log_config()
        ).get_loop_factory()
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve_http_and_grpc(settings, triton))  # returns on SIGINT/SIGTERM
    finally:
        if triton is not None:
            log.info("stopping tritonserver")
            triton.stop(timeout=15)
    return 0


async def _serve_http_and_grpc(settings: Settings, triton: EmbeddedTriton | None) -> None:
    url = triton.url if triton else settings.triton_url
    assert url is not None  # no embedded Triton: an external one was named
    client = PipelineClient(url, settings.inference_timeout_s)
    services = Services.create(settings, client)
    keeper = ModelKeeper(
        settings.triton_http_url,
        stubs=triton,
        on_reload=lambda name: MODEL_RELOADS.labels(name).inc(),
        serving=services.index.wanted_versions,
        peers=(lambda: resolve_peers(peers)) if (peers := settings.triton_peers) else None,
    )
    services.keeper = keeper
    services.index.loaded = lambda: keeper.loaded
    keeping = asyncio.create_task(keeper.run(), name="model-keeper")
    assert services.trials is not None
    trials = asyncio.create_task(services.trials.run(), name="trials")
    grace = settings.shutdown_grace_s
    try:
        grpc_server = GrpcServer(services)
        config = uvicorn.Config(
            create_app(settings, services),
            host=settings.host,
            port=settings.http_port,
            log_level="info",
            log_config=uvicorn_log_config(),  # redacts keys in every uvicorn line
            access_log=False,
            ssl_certfile=settings.tls_cert,
            ssl_keyfile=settings.tls_key,
            timeout_graceful_shutdown=grace,
            **uvicorn_limits(settings),  # headers timeout and size, keep-alive, connections
        )
        await grpc_server.start()
        log.info("gRPC API on %s", grpc_server.address)
        server = _Server(config)
        stopping: list[asyncio.Task] = []
        loop = asyncio.get_running_loop()

        def drain() -> None:
            services.drain(grace)
            stopping.append(loop.create_task(grpc_server.stop(grace), name="grpc-stop"))

        server.on_exit = drain  # type: ignore[method-assign]
        try:
            await server.serve()  # returns on SIGINT/SIGTERM, after HTTP's grace
        finally:
            log.info("stopping the gRPC server")
            await (stopping[0] if stopping else grpc_server.stop(grace))
    finally:
        keeping.cancel()
        trials.cancel()
        await asyncio.gather(keeping, trials, return_exceptions=True)
        await services.trials.close()
        await client.close()
