"""The FastAPI application: the routers over the application core, error handlers, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.app.context import Services
from service.metrics.asgi import MetricsMiddleware
from service.settings import Settings
from service.triton.client import PipelineClient

from . import debug, health, models, pose, video, web, ws
from .door import Door
from .errors import add_error_handlers


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """``services`` given (shared with the gRPC server, or around a fake client in tests)
    stays the caller's; otherwise the app connects to Triton at ``settings.triton_url`` (the
    embedded one unless set) for its lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            yield
            return
        url = settings.triton_url or f"localhost:{settings.triton_grpc_port}"
        client = PipelineClient(url, settings.inference_timeout_s)
        app.state.services = Services.create(settings, client)
        try:
            yield
        finally:
            await client.close()

    app = FastAPI(
        title="rtmserve",
        version=__version__,
        description="Real-time multi-person pose estimation (RTMDet + RTMPose) served by Triton.",
        lifespan=lifespan,
    )
    app.state.services = services
    for module in (pose, video, ws, web, models, health):
        app.include_router(module.router)
    if settings.debug_endpoints:  # off by default; then like the API, behind the keys
        app.include_router(debug.router)
    add_error_handlers(app)
    # inside the metrics: refusals at the door are counted too
    app.add_middleware(Door, refusal_delay_s=settings.refusal_delay_s)
    app.add_middleware(MetricsMiddleware, not_in_flight=(health.METRICS_PATH,))
    return app
