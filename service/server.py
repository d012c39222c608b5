"""``rtmserve serve``: prepare the repository, start Triton (unless external), serve HTTP and
gRPC from one asyncio loop with one Triton client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from service.app.context import Services
from service.grpc.server import GrpcServer
from service.http.app import create_app
from service.prepare import Fallbacks, prepare_repository
from service.settings import Settings
from service.triton.client import PipelineClient
from service.triton.embedded import EmbeddedTriton, TritonPorts

log = logging.getLogger("rtmserve")
# On SIGINT/SIGTERM, requests and streams in progress get this long to finish.
SHUTDOWN_GRACE_S = 10.0


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after shutting down, which would end the process before
    Triton is stopped; here a signal only asks the server to exit and ``serve`` cleans up."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def embedded_triton(settings: Settings) -> EmbeddedTriton:
    ports = TritonPorts(
        settings.triton_http_port, settings.triton_grpc_port, settings.triton_metrics_port
    )
    return EmbeddedTriton(settings.repository_dir, settings.home / "triton", ports)


def serve(settings: Settings, prepare: bool = True, fallbacks: Fallbacks | None = None) -> int:
    """``fallbacks``: what ``prepare`` may use when official weights cannot be had."""
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
        loop_factory = uvicorn.Config(app=None).get_loop_factory()  # uvicorn's choice (uvloop)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve_http_and_grpc(settings))  # returns on SIGINT/SIGTERM
    finally:
        if triton is not None:
            log.info("stopping tritonserver")
            triton.stop()
    return 0


async def _serve_http_and_grpc(settings: Settings) -> None:
    """HTTP and gRPC share the loop and the Triton client; a signal stops HTTP, then gRPC."""
    url = settings.triton_url or f"localhost:{settings.triton_grpc_port}"
    client = PipelineClient(url, settings.inference_timeout_s)
    services = Services.create(settings, client)
    try:
        grpc_server = GrpcServer(services)
        config = uvicorn.Config(
            create_app(settings, services),
            host=settings.host,
            port=settings.http_port,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        await grpc_server.start()
        log.info("gRPC API on %s", grpc_server.address)
        try:
            await _Server(config).serve()  # returns on SIGINT/SIGTERM
        finally:
            log.info("stopping the gRPC server")
            await grpc_server.stop(SHUTDOWN_GRACE_S)
    finally:
        await client.close()
