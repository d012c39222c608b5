"""``POST /v1/pose``: one image in (multipart or raw body), persons and keypoints out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.app.decode import SUPPORTED, ImageIn, inspect
from service.app.errors import InvalidImage
from service.app.estimate import estimate_pose
from service.app.options import PoseOptions
from service.app.schemas import PoseResponse

from .deps import ClientDep, ServicesDep
from .errors import ERROR_RESPONSES, binary_body
from .upload import read_upload

router = APIRouter()


@router.post(
    "/v1/pose",
    response_model=PoseResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=binary_body("image", SUPPORTED),
    summary="Detect every person in an image and estimate their 17 COCO keypoints",
)
async def pose(
    request: Request,
    options: Annotated[PoseOptions, Query()],
    services: ServicesDep,
    client: ClientDep,
) -> PoseResponse:
    settings = services.settings

    async def load() -> ImageIn:
        data = await read_upload(request, settings, settings.max_upload_bytes, InvalidImage)
        return inspect(data, settings.max_image_pixels)  # the pipeline decodes it

    return await estimate_pose(services, options, load)
