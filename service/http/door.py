"""The door: a request the gateway would refuse anyway is refused from its headers alone.

Under overload (clients that ignore ``Retry-After`` and retry at once) refusing must cost far
less than serving, or refusals eat the CPU that serving needs. A pure ASGI middleware, before
routing, validation and authentication: when every image slot is busy and the queue is full
(``Admission.refusal``), every stream is taken, or the gateway already receives its limit of
uploads (in all, or from this client's address), it answers 503 + ``Retry-After`` with
``Connection: close`` without reading the body: the connection ends with the answer, so the
unread body is never drained. What passes is checked again where the work is admitted.

A client that ignores ``Retry-After`` costs a refusal each time it comes back, as fast as it
can: per address, a refusal that follows the previous one within ``Retry-After`` is answered
only after ``refusal_delay_s`` (``EarlyRetries``; holding nothing but the idle connection), so
such a client retries at most once per delay instead of in a busy loop, and the cores stay with
the work admitted. A client that honours ``Retry-After`` is answered at once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from service.app.admission import RETRY_AFTER_S
from service.app.context import Services
from service.app.errors import ApiError
from service.metrics.record import observe_error

IMAGE_PATHS = frozenset({"/v1/pose", "/v1/pose/render"})
VIDEO_PATHS = frozenset({"/v1/pose/video"})
MAX_ADDRESSES = 10_000  # addresses remembered; beyond, those refused longest ago are forgotten
MAX_DELAYED = 256  # refusals held at once; beyond, answered at once


@dataclass
class EarlyRetries:
    """When each address was last refused, and how long its next refusal is held."""

    delay_s: float
    window_s: float = RETRY_AFTER_S
    last: dict[str, float] = field(default_factory=dict)
    held: int = 0

    def delay(self, client: str, now: float) -> float:
        """Records a refusal of ``client`` at ``now``; the seconds to hold its answer."""
        early = now - self.last.pop(client, float("-inf")) < self.window_s
        self.last[client] = now  # re-inserted: the dict stays in order of the last refusal
        if len(self.last) > MAX_ADDRESSES:
            del self.last[next(iter(self.last))]
        return self.delay_s if early and self.held < MAX_DELAYED else 0.0


@dataclass(frozen=True)
class _Refused:
    """Stands for the route in the scope, so the metrics label a refusal with its path."""

    path: str


def refusal(services: Services, path: str, client: str) -> ApiError | None:
    """Why a POST to ``path`` from ``client`` (its address) would be refused now, else None."""
    if path in IMAGE_PATHS:
        refused = services.admission.refusal()
    elif path in VIDEO_PATHS:
        refused = services.streams.refusal()
    else:
        return None
    return refused or services.admission.reading.refusal(client)


async def answer(send: Send, exc: ApiError) -> None:
    """The API's JSON error, closing the connection (its body, if any, stays unread)."""
    observe_error("http", exc.code)
    body = json.dumps(exc.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(exc.retry_after))).encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Door:
    """``refusal_delay_s``: how long a refusal that comes within ``Retry-After`` of the
    previous one to the same address is held (0: never)."""

    def __init__(self, app: ASGIApp, refusal_delay_s: float = 0.0) -> None:
        self.app = app
        self.retries = EarlyRetries(refusal_delay_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            services = scope["app"].state.services
            client = scope.get("client")
            address = client[0] if client else ""
            if services is not None and (refused := refusal(services, scope["path"], address)):
                scope["route"] = _Refused(scope["path"])
                await self._hold(address)
                await answer(send, refused)
                return
        await self.app(scope, receive, send)

    async def _hold(self, address: str) -> None:
        if wait := self.retries.delay(address, asyncio.get_running_loop().time()):
            self.retries.held += 1
            try:
                await asyncio.sleep(wait)  # the delay itself: this client came back too soon
            finally:
                self.retries.held -= 1
