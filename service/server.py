"""``rtmserve serve``: prepare the repository, start Triton (unless external), serve HTTP."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from service.gateway.app import create_app
from service.prepare import prepare_repository
from service.settings import Settings
from service.triton.embedded import EmbeddedTriton, TritonPorts

log = logging.getLogger("rtmserve")


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


def serve(settings: Settings, prepare: bool = True) -> int:
    if prepare:
        report = prepare_repository(settings)
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
        app = create_app(settings)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.http_port, log_level="info", access_log=False
        )
        _Server(config).run()  # returns on SIGINT/SIGTERM
    finally:
        if triton is not None:
            log.info("stopping tritonserver")
            triton.stop()
    return 0
