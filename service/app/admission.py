"""Admission control: how much work this gateway accepts at once.

Images: at most ``max_in_flight`` are decoded and inferred at once and ``max_queued`` wait for
a slot, each at most ``queue_timeout_s``; anything beyond is refused at once with 503 +
Retry-After (``Overloaded``), so an accepted request's latency stays bounded however many
clients push and memory holds at most that many images. Video: at most ``max_streams`` open
streams, ``max_streams_per_client`` of them per client (429 beyond).

Uploads are received before a slot is taken (a slow client holds no slot), at most
``max_reading`` at once and ``max_reading_per_client`` from one address (``Reading``; 503
beyond). ``refusal`` tells, from the state alone, whether a new request would be refused: the
HTTP door (``service.http.door``) answers it before the request's body is read.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from service.settings import Settings

from .errors import Overloaded, RateLimited

RETRY_AFTER_S = 1


class Reading:
    """Request bodies being received: at most ``limit`` at once, ``per_client`` per address."""

    def __init__(self, limit: int, per_client: int) -> None:
        self.limit, self.per_client = limit, per_client
        self.open = Counter[str]()
        self.total = 0

    def refusal(self, client: str) -> Overloaded | None:
        if self.total >= self.limit:
            return Overloaded(
                f"the server is receiving {self.total} uploads, its limit; retry later",
                retry_after=RETRY_AFTER_S,
            )
        if self.open[client] >= self.per_client:
            return Overloaded(
                f"this address is sending {self.per_client} uploads at once, its limit; "
                "retry later",
                retry_after=RETRY_AFTER_S,
            )
        return None

    @contextmanager
    def receiving(self, client: str) -> Iterator[None]:
        if (refused := self.refusal(client)) is not None:
            raise refused
        self.open[client] += 1
        self.total += 1
        try:
            yield
        finally:
            self.total -= 1
            self.open[client] -= 1
            if not self.open[client]:
                del self.open[client]


class Admission:
    def __init__(
        self,
        max_in_flight: int,
        max_queued: int,
        queue_timeout_s: float,
        reading: Reading | None = None,
    ) -> None:
        self.max_in_flight, self.max_queued = max_in_flight, max_queued
        self.timeout_s = queue_timeout_s
        self.in_flight = 0
        self.waiting = 0
        self._freed = asyncio.Condition()
        self.reading = reading or Reading(16, 8)

    def refusal(self) -> Overloaded | None:
        """What ``slot`` would raise at once now (every slot busy, the queue full), else None."""
        busy = self.in_flight >= self.max_in_flight or self.waiting
        if busy and self.waiting >= self.max_queued:
            return Overloaded(
                f"the server is at capacity ({self.in_flight} images in progress, "
                f"{self.waiting} waiting); retry later",
                retry_after=RETRY_AFTER_S,
            )
        return None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.in_flight >= self.max_in_flight or self.waiting:
            if (refused := self.refusal()) is not None:
                raise refused
            await self._wait()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            async with self._freed:
                self._freed.notify(1)

    async def _wait(self) -> None:
        self.waiting += 1
        try:
            async with self._freed:
                await asyncio.wait_for(
                    self._freed.wait_for(lambda: self.in_flight < self.max_in_flight),
                    self.timeout_s,
                )
        except TimeoutError:
            raise Overloaded(
                f"no capacity within {self.timeout_s:g} s; retry later", retry_after=RETRY_AFTER_S
            ) from None
        finally:
            self.waiting -= 1


class StreamSlots:
    def __init__(self, max_streams: int, max_per_client: int) -> None:
        self.max_streams, self.max_per_client = max_streams, max_per_client
        self.open = Counter[str]()

    def refusal(self) -> Overloaded | None:
        """What ``reserve`` would raise for any client now (every stream taken), else None."""
        if sum(self.open.values()) >= self.max_streams:
            return Overloaded(
                f"the server has {self.max_streams} streams open, its limit; retry later",
                retry_after=RETRY_AFTER_S,
            )
        return None

    @contextmanager
    def reserve(self, client: str) -> Iterator[None]:
        if (refused := self.refusal()) is not None:
            raise refused
        if self.open[client] >= self.max_per_client:
            raise RateLimited(
                f"client {client!r} has {self.max_per_client} streams open, its limit",
                retry_after=RETRY_AFTER_S,
            )
        self.open[client] += 1
        try:
            yield
        finally:
            self.open[client] -= 1


def from_settings(settings: Settings) -> tuple[Admission, StreamSlots]:
    return (
        Admission(
            settings.max_in_flight,
            settings.max_queued,
            settings.queue_timeout_s,
            Reading(settings.max_reading, settings.max_reading_per_client),
        ),
        StreamSlots(settings.max_streams, settings.max_streams_per_client),
    )
