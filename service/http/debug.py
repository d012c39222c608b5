"""``GET /debug/runtime``: what this process is running, so leaks are observable from outside.

Counts only (live video streams, asyncio tasks, Python threads): the tests use it to prove that
a cancelled stream leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import threading

from fastapi import APIRouter
from pydantic import BaseModel

from service.app.video.session import ACTIVE_STREAMS

router = APIRouter()


class Runtime(BaseModel):
    streams: int
    tasks: int
    threads: int


@router.get("/debug/runtime", response_model=Runtime, summary="Live streams, tasks and threads")
async def runtime() -> Runtime:
    return Runtime(
        streams=ACTIVE_STREAMS.count,
        tasks=len(asyncio.all_tasks()),
        threads=threading.active_count(),
    )
