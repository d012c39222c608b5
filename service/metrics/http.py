"""HTTP side: a pure-ASGI middleware timing every request by route template and status, the
error handlers counting API error codes, and ``GET /metrics`` (which refreshes ``rtmserve_ready``
first, so a scrape always sees the readiness ``/readyz`` would report)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.gateway.errors import ApiError
from service.gateway.readiness import check_readiness

from .families import HTTP_IN_FLIGHT, HTTP_LATENCY, HTTP_REQUESTS, READY
from .observe import observe_error

UNMATCHED = "unmatched"  # any URL no route serves: one label value, not one per URL

METRICS_PATH = "/metrics"
router = APIRouter()


@router.get(METRICS_PATH, include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = request.app.state
    try:
        ready = (await check_readiness(state.settings, state.client, state.index)).ready
    except Exception:  # a failing check reads as not ready; the scrape itself must succeed
        ready = False
    READY.set(1 if ready else 0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope) -> str:
    """The path template of the route that served ``scope`` (``/v1/pose``; the router records
    it in the scope), else ``unmatched``."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


class MetricsMiddleware:
    """Counts and times each HTTP request until its response has been sent in full."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        scrape = scope["path"] == METRICS_PATH  # not an in-flight request of the service
        if not scrape:
            HTTP_IN_FLIGHT.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        except Exception:
            observe_error("http", "internal")
            raise
        finally:
            elapsed = time.perf_counter() - start
            if not scrape:
                HTTP_IN_FLIGHT.dec()
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route, str(status)).observe(elapsed)


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _counting(handler: Handler, code: Callable[[Exception], str]) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        observe_error("http", code(exc))
        return await handler(request, exc)

    return handle


def instrument(app: FastAPI) -> None:
    """Add the middleware and ``/metrics``; wrap the app's error handlers to count codes."""
    app.add_middleware(MetricsMiddleware)
    app.include_router(router)
    handlers = app.exception_handlers
    handlers[ApiError] = _counting(handlers[ApiError], lambda e: getattr(e, "code", "bad_request"))
    handlers[RequestValidationError] = _counting(
        handlers[RequestValidationError], lambda _: "invalid_parameter"
    )
