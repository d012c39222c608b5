"""FastAPI dependencies: what every route gets from the application state."""

from __future__ import annotations

from fastapi import Request

from service.settings import Settings
from service.triton.client import PipelineClient

from .models import ModelIndex


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_client(request: Request) -> PipelineClient:
    return request.app.state.client


def get_index(request: Request) -> ModelIndex:
    return request.app.state.index
