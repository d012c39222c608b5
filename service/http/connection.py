"""uvicorn's HTTP protocol (httptools) with the limits it lacks: a request's line and headers
must come within ``headers_timeout_s`` and stay under ``max_header_bytes``.

uvicorn 0.x times out only idle keep-alive connections: a client that connects and sends
nothing, or trickles its headers a byte at a time, holds its connection (and a place under
``limit_concurrency``) for ever, and httptools puts no bound on the size of the URL or the
headers. Here a connection whose headers are late is closed, and one whose headers are too
large is answered 400 (uvicorn's answer to a request it cannot parse) and closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import Settings


class HeadersTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing and uvicorn answers 400."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    headers_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024

    _headers_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.headers_timeout_s, self._headers_late)

    def _headers_done(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_late(self) -> None:
        self._headers_timer = None
        if not self.transport.is_closing():
            self.logger.debug("closing a connection whose request headers were late")
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._await_headers()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            raise HeadersTooLarge(f"request line and headers over {self.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._headers_done()
        super().on_headers_complete()


def guarded_protocol(headers_timeout_s: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"headers_timeout_s": headers_timeout_s, "max_header_bytes": max_header_bytes},
    )


def uvicorn_limits(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` arguments: the guarded protocol, the keep-alive and connection caps
    (``h11_max_incomplete_event_size`` bounds headers should h11 ever be chosen instead)."""
    return {
        "http": guarded_protocol(settings.headers_timeout_s, settings.max_header_bytes),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": max(1, round(settings.keep_alive_s)),
    }
