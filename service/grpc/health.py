"""grpc.health.v1 kept in step with ``/readyz``: SERVING only while Triton and the models are.

A background task re-runs the readiness check every ``period_s`` and publishes the result for
the whole server ("") and for ``rtmserve.v1.PoseService``, so Watch streams see changes.
"""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from service.app.context import Services
from service.app.readiness import check_readiness

from .servicer import SERVICE_NAME

log = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ReadinessHealth:
    def __init__(self, services: Services, period_s: float = 1.0) -> None:
        self.services, self.period_s = services, period_s
        self.servicer = health_aio.HealthServicer()
        self._task: asyncio.Task[None] | None = None
        self._ready: bool | None = None

    async def start(self) -> None:
        await self._publish(False)
        self._task = asyncio.create_task(self._watch(), name="grpc-health-readiness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.servicer.enter_graceful_shutdown()  # NOT_SERVING from now on

    async def _watch(self) -> None:
        while True:
            try:
                ready = (await check_readiness(self.services)).ready
            except Exception:  # a check that fails means not ready, never a dead watcher
                log.exception("readiness check failed")
                ready = False
            await self._publish(ready)
            await asyncio.sleep(self.period_s)  # polling period, not synchronisation

    async def _publish(self, ready: bool) -> None:
        if ready == self._ready:
            return
        self._ready = ready
        for service in ("", SERVICE_NAME):
            await self.servicer.set(service, SERVING if ready else NOT_SERVING)
