"""Clients that stall: an upload or a stream whose next piece does not come in time ends with
408 / DEADLINE_EXCEEDED (``RequestTimeout``), so a slow or vanished client holds nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from .errors import RequestTimeout

T = TypeVar("T")


async def within_idle(items: AsyncIterator[T], idle_s: float, what: str) -> AsyncIterator[T]:
    """``items``, each of which must come within ``idle_s`` of the previous one."""
    while True:
        try:
            item = await asyncio.wait_for(anext(items, None), idle_s)
        except TimeoutError:
            raise RequestTimeout(f"{what} stalled: nothing for {idle_s:g} s") from None
        if item is None:
            return
        yield item
