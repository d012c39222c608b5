"""Admission control: how much work this gateway accepts at once.

Images: at most ``max_in_flight`` are decoded and inferred at once and ``max_queued`` wait for
a slot, each at most ``queue_timeout_s``; anything beyond is refused at once with 503 +
Retry-After (``Overloaded``), so an accepted request's latency stays bounded however many
clients push and memory holds at most that many images. Video: at most ``max_streams`` open
streams, ``max_streams_per_client`` of them per client (429 beyond).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from service.settings import Settings

from .errors import Overloaded, RateLimited

RETRY_AFTER_S = 1


class Admission:
    def __init__(self, max_in_flight: int, max_queued: int, queue_timeout_s: float) -> None:
        self.max_in_flight, self.max_queued = max_in_flight, max_queued
        self.timeout_s = queue_timeout_s
        self.in_flight = 0
        self.waiting = 0
        self._freed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.in_flight >= self.max_in_flight or self.waiting:
            if self.waiting >= self.max_queued:
                raise Overloaded(
                    f"the server is at capacity ({self.in_flight} images in progress, "
                    f"{self.waiting} waiting); retry later",
                    retry_after=RETRY_AFTER_S,
                )
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

    @contextmanager
    def reserve(self, client: str) -> Iterator[None]:
        if sum(self.open.values()) >= self.max_streams:
            raise Overloaded(
                f"the server has {self.max_streams} streams open, its limit; retry later",
                retry_after=RETRY_AFTER_S,
            )
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
        Admission(settings.max_in_flight, settings.max_queued, settings.queue_timeout_s),
        StreamSlots(settings.max_streams, settings.max_streams_per_client),
    )
