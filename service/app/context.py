"""What every request needs, whatever the transport: settings, the pipeline client, the
model index, access and admission control, the model keeper. One object built at start-up and
handed to the HTTP routes and the gRPC servicer (in-process tests build it around a fake
pipeline client)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from service.settings import Settings
from service.triton.client import PipelineRequest, PipelineResult
from service.triton.keeper import ModelKeeper

from .access import AccessControl
from .admission import Admission, StreamSlots, from_settings
from .models import ModelIndex
from .trials import Trials


class PipelineClient(Protocol):
    """What the application needs of Triton (``service.triton.client.PipelineClient``)."""

    url: str

    async def infer(self, request: PipelineRequest) -> PipelineResult: ...

    async def server_live(self) -> bool: ...

    async def model_ready(self, name: str, version: int | None = None) -> bool: ...

    async def close(self) -> None: ...


@dataclass
class ProbeState:
    """The last deep readiness check (``service.app.readiness``): when, and what was wrong."""

    checked: float = float("-inf")  # time.monotonic()
    problem: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Services:
    settings: Settings
    client: PipelineClient
    index: ModelIndex
    access: AccessControl
    admission: Admission
    streams: StreamSlots
    keeper: ModelKeeper | None = field(default=None)  # None: Triton is not ours to repair
    draining_until: float | None = field(default=None)  # time.monotonic() once shutting down
    probe: ProbeState = field(default_factory=ProbeState)
    trials: Trials | None = field(default=None)  # candidates on trial: canaries and copies

    def drain(self, grace_s: float) -> None:
        """Shutting down: readiness fails now, open streams end before ``grace_s`` is up."""
        self.draining_until = time.monotonic() + max(0.0, grace_s - 1.0)

    def _report_dead_stub(self, model: str, sent: float) -> None:
        if self.keeper is not None:
            self.keeper.report(model, sent)

    @property
    def draining(self) -> bool:
        return self.draining_until is not None

    @classmethod
    def create(cls, settings: Settings, client: PipelineClient) -> Services:
        admission, streams = from_settings(settings)
        access = AccessControl.from_settings(settings)
        index = ModelIndex(settings)
        services = cls(settings, client, index, access, admission, streams)
        services.trials = Trials(settings, index, client, services._report_dead_stub)
        index.canary = services.trials.canary
        return services
