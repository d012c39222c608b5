"""HTTP side: a pure-ASGI middleware counting and timing every request by route template and
status until its response has been sent in full (a video's whole NDJSON stream).

Hand-written rather than prometheus-fastapi-instrumentator (8.1, read for this): that library
creates its in-progress gauge in the registry for every app it instruments (a second app in one
process, as the in-process tests build, fails on a duplicate metric), drops excluded routes
entirely (scrapes of ``/metrics`` should be counted, but not as requests in flight), and feeds
custom metrics only once a request has ended, too late for an in-flight gauge.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .families import HTTP_IN_FLIGHT, HTTP_LATENCY, HTTP_REQUESTS
from .record import observe_error

UNMATCHED = "unmatched"  # any URL no route serves: one label value, not one per URL


def route_template(scope: Scope) -> str:
    """The path template of the route that served ``scope`` (``/v1/pose``; the router records
    it in the scope), else ``unmatched``."""
    return getattr(scope.get("route"), "path", None) or UNMATCHED


class MetricsMiddleware:
    """``not_in_flight``: paths (the scrape endpoint) that are counted but not in flight."""

    def __init__(self, app: ASGIApp, not_in_flight: tuple[str, ...] = ()) -> None:
        self.app, self.not_in_flight = app, not_in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_flight = scope["path"] not in self.not_in_flight
        if in_flight:
            HTTP_IN_FLIGHT.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        except Exception:
            observe_error("http", "internal")
            raise
        finally:
            elapsed = time.perf_counter() - start
            if in_flight:
                HTTP_IN_FLIGHT.dec()
            labels = (scope["method"], route_template(scope), str(status))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_LATENCY.labels(*labels).observe(elapsed)
