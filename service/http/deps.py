"""FastAPI dependencies: what every route gets from the application state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.app.context import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]
