"""FastAPI application: routes, dependencies and error handlers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service import __version__
from service.metrics.http import instrument
from service.settings import Settings
from service.triton.client import PipelineClient

from . import runtime, video
from .decode import decode_image
from .deps import get_client, get_index, get_settings
from .errors import ApiError
from .estimate import PoseQuery, estimate_pose
from .models import ModelIndex
from .readiness import check_readiness
from .schemas import (
    ErrorResponse,
    ModelInfo,
    ModelsResponse,
    PoseResponse,
    Readiness,
    VersionInfo,
)
from .upload import read_image_bytes

ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422, 502, 503)}
IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{
                f"image/{t}": {"schema": {"type": "string", "format": "binary"}}
                for t in ("jpeg", "png", "webp", "bmp")
            },
        },
    }
}


router = APIRouter()


@router.post(
    "/v1/pose",
    response_model=PoseResponse,
    responses=ERRORS,
    openapi_extra=IMAGE_BODY,
    summary="Detect every person in an image and estimate their 17 COCO keypoints",
)
async def pose(
    request: Request,
    score_threshold: float | None = Query(
        None, ge=0.0, le=1.0, description="detector score threshold"
    ),
    max_persons: int | None = Query(
        None, ge=1, le=1000, description="keep the N highest-scoring persons"
    ),
    pose_model: str | None = Query(None, description="pose model name (see /v1/models)"),
    detector: str | None = Query(None, description="detector model name (see /v1/models)"),
    keypoints: bool = Query(
        True, description="false: person boxes only (the pose model is skipped)"
    ),
    settings: Settings = Depends(get_settings),
    client: PipelineClient = Depends(get_client),
    index: ModelIndex = Depends(get_index),
) -> PoseResponse:
    async def load() -> tuple[np.ndarray, str]:
        data = await read_image_bytes(request, settings.max_upload_bytes)
        return await run_in_threadpool(decode_image, data, settings.max_image_pixels)

    query = PoseQuery(score_threshold, max_persons, pose_model, detector, keypoints)
    return await estimate_pose(settings, client, index, query, load)


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> dict:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(
    settings: Settings = Depends(get_settings),
    client: PipelineClient = Depends(get_client),
    index: ModelIndex = Depends(get_index),
):
    """Ready when Triton answers and the pipeline and default models' serving versions load."""
    body = await check_readiness(settings, client, index)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get(
    "/v1/models", response_model=ModelsResponse, summary="Models, versions and their status"
)
async def models(
    settings: Settings = Depends(get_settings),
    client: PipelineClient = Depends(get_client),
    index: ModelIndex = Depends(get_index),
) -> ModelsResponse:
    records = index.all()
    pairs = [(r, v) for r in records for v in sorted(r.versions)]
    ready = await asyncio.gather(*(client.model_ready(r.name, v) for r, v in pairs))
    state = {(r.name, v): ok for (r, v), ok in zip(pairs, ready, strict=True)}
    out = [
        ModelInfo(
            name=r.name,
            task=r.task,
            serving_version=r.serving_version,
            spec=r.spec,
            versions=[
                VersionInfo(
                    version=v,
                    serving=v == r.serving_version,
                    ready=state[(r.name, v)],
                    trained=bool(meta.get("trained", True)),
                    meta=meta,
                )
                for v, meta in sorted(r.versions.items())
            ],
        )
        for r in records
    ]
    return ModelsResponse(
        models=out,
        default_detector=index.default("detector"),
        default_pose_model=index.default("pose"),
    )


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in exc.errors()
    )
    body = {"error": {"code": "invalid_parameter", "message": problems}}
    return JSONResponse(body, status_code=422)


def create_app(settings: Settings, client: PipelineClient | None = None) -> FastAPI:
    """The app talks to Triton at ``settings.triton_url`` (the embedded one unless set)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.triton_url or f"localhost:{settings.triton_grpc_port}"
        app.state.client = client or PipelineClient(url, settings.inference_timeout_s)
        try:
            yield
        finally:
            if client is None:  # a client passed in belongs to the caller (shared with gRPC)
                await app.state.client.close()

    app = FastAPI(
        title="rtmserve",
        version=__version__,
        description="Real-time multi-person pose estimation (RTMDet + RTMPose) served by Triton.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.index = ModelIndex(settings.repository_dir, settings)
    app.include_router(router)
    app.include_router(video.router)
    app.include_router(runtime.router)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    instrument(app)  # GET /metrics; counts requests and error codes
    return app
