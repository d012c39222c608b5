"""FastAPI dependencies: what every route gets from the application state, and who asks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.app.access import Client, presented_key
from service.app.context import Services
from service.app.errors import ApiError
from service.metrics.families import CLIENT_REQUESTS


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

# auto_error=False: a missing key is the API's own 401 (JSON body), or no error at all when the
# service runs without keys
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
BEARER = HTTPBearer(auto_error=False, description="an API key as a bearer token")


def client_name(
    request: Request,
    services: ServicesDep,
    key: Annotated[str | None, Security(API_KEY)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Client:
    """Who asks (its key's name, or ``anonymous`` and its address without keys), charged one
    request; 401 or 429 otherwise."""
    client = services.access.authenticate(
        presented_key(key, f"Bearer {bearer.credentials}" if bearer else None),
        request.client.host if request.client else "",
    )
    CLIENT_REQUESTS.labels("http", client.name).inc()
    return client


def optional_client(
    services: ServicesDep,
    key: Annotated[str | None, Security(API_KEY)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> str | None:
    """The name behind a valid key, else None (no error, nothing charged): for the open
    endpoints, which tell more only to a client that holds a key."""
    if not services.access.enabled:
        return None
    try:
        presented = presented_key(key, f"Bearer {bearer.credentials}" if bearer else None)
        return services.access.identify(presented).name
    except ApiError:
        return None


ClientDep = Annotated[Client, Depends(client_name)]
KnownClientDep = Annotated[str | None, Depends(optional_client)]
