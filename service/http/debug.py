"""``GET /debug/runtime``: what this process is running, so leaks are observable from outside.

Counts only (live video streams, asyncio tasks, Python threads, images admitted and waiting):
the tests use it to prove that a cancelled stream leaves nothing behind. Served only with
``RTMSERVE_DEBUG_ENDPOINTS=1``, and then behind the API keys like the API.
"""

from __future__ import annotations

import asyncio
import threading

from fastapi import APIRouter
from pydantic import BaseModel

from service.app.video.session import ACTIVE_STREAMS

from .deps import ClientDep, ServicesDep

router = APIRouter()


class Runtime(BaseModel):
    streams: int
    tasks: int
    threads: int
    in_flight: int
    waiting: int
    receiving: int  # request bodies being read (before their image takes a slot)


@router.get("/debug/runtime", response_model=Runtime, summary="Live streams, tasks and threads")
async def runtime(services: ServicesDep, client: ClientDep) -> Runtime:
    return Runtime(
        streams=ACTIVE_STREAMS.count,
        tasks=len(asyncio.all_tasks()),
        threads=threading.active_count(),
        in_flight=services.admission.in_flight,
        waiting=services.admission.waiting,
        receiving=services.admission.reading.total,
    )
