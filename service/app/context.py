"""What every request needs, whatever the transport: settings, the pipeline client, the
model index. One object built at start-up and handed to the HTTP routes and the gRPC
servicer (in-process tests build it around a fake pipeline client)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from service.settings import Settings
from service.triton.client import PipelineRequest, PipelineResult

from .models import ModelIndex


class PipelineClient(Protocol):
    """What the application needs of Triton (``service.triton.client.PipelineClient``)."""

    url: str

    async def infer(self, request: PipelineRequest) -> PipelineResult: ...

    async def server_ready(self) -> bool: ...

    async def model_ready(self, name: str, version: int | None = None) -> bool: ...

    async def close(self) -> None: ...


@dataclass
class Services:
    settings: Settings
    client: PipelineClient
    index: ModelIndex

    @classmethod
    def create(cls, settings: Settings, client: PipelineClient) -> Services:
        return cls(settings, client, ModelIndex(settings))
