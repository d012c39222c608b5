"""``/healthz`` (the process is alive), ``/readyz`` (it can answer) and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import __version__
from service.app.readiness import check_readiness
from service.app.schemas import Readiness
from service.metrics.families import ADMISSION, CLIENT_REQUESTS, READY

from .deps import KnownClientDep, ServicesDep

METRICS_PATH = "/metrics"
router = APIRouter()


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> dict:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(services: ServicesDep):
    """Ready when Triton answers and the pipeline and default models' serving versions load."""
    body = await check_readiness(services, deep=True)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


def without_clients(exposition: bytes) -> bytes:
    """The exposition less the per-client family, whose labels are the API keys' names."""
    family = CLIENT_REQUESTS.describe()[0].name.encode()
    lines = exposition.split(b"\n")
    return b"\n".join(line for line in lines if family not in line.split(b"{")[0])


@router.get(METRICS_PATH, include_in_schema=False)
async def metrics(services: ServicesDep, known: KnownClientDep) -> Response:
    """Refreshes ``rtmserve_ready`` first, so a scrape sees what ``/readyz`` would report.
    With API keys configured, the per-client counts (labelled with the keys' names) are only
    for a scrape that sends a valid key (Prometheus: ``authorization: {credentials: KEY}``)."""
    try:
        ready = (await check_readiness(services)).ready
    except Exception:  # a failing check reads as not ready; the scrape itself must succeed
        ready = False
    READY.set(1 if ready else 0)
    ADMISSION.labels("in_flight").set(services.admission.in_flight)
    ADMISSION.labels("waiting").set(services.admission.waiting)
    exposition = generate_latest()
    if services.access.enabled and known is None:
        exposition = without_clients(exposition)
    return Response(exposition, media_type=CONTENT_TYPE_LATEST)
