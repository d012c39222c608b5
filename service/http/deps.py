"""FastAPI dependencies: what every route gets from the application state, and who asks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.app.access import presented_key
from service.app.context import Services
from service.metrics.families import CLIENT_REQUESTS


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

# auto_error=False: a missing key is the API's own 401 (JSON body), or no error at all when the
# service runs without keys
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
BEARER = HTTPBearer(auto_error=False, description="an API key as a bearer token")


def client_name(
    services: ServicesDep,
    key: Annotated[str | None, Security(API_KEY)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> str:
    """The client's name (its key's, or ``anonymous`` without keys); 401 or 429 otherwise."""
    name = services.access.authenticate(
        presented_key(key, f"Bearer {bearer.credentials}" if bearer else None)
    )
    CLIENT_REQUESTS.labels("http", name).inc()
    return name


ClientDep = Annotated[str, Depends(client_name)]
