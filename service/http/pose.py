"""``POST /v1/pose``: one image in (multipart or raw body), persons and keypoints out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from service.app.decode import SUPPORTED, ImageIn, inspect
from service.app.errors import InvalidImage
from service.app.estimate import estimate_pose
from service.app.options import PoseOptions
from service.app.render import RenderQuery, draw
from service.app.schemas import PoseResponse
from service.core.image import decode
from service.core.render import encode

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
    return await estimate_pose(services, options, _loader(request, services.settings))


def _loader(request: Request, settings, keep: list[bytes] | None = None):
    """Reads the upload once admitted; checks it (the pipeline decodes it); ``keep`` gets the
    bytes when the gateway needs them too."""

    async def load() -> ImageIn:
        data = await read_upload(request, settings, settings.max_upload_bytes, InvalidImage)
        if keep is not None:
            keep.append(data)
        return inspect(data, settings.max_image_pixels)

    return load


class PoseRenderOptions(PoseOptions, RenderQuery):
    """``/v1/pose``'s options and how to draw."""


RESULT_HEADER = "X-Pose-Result"


def media_type(accept: str) -> str:
    """image/png when Accept names it before image/jpeg, else JPEG."""
    accept = accept.lower()
    png, jpeg = accept.find("image/png"), accept.find("image/jpeg")
    return "image/png" if png >= 0 and (jpeg < 0 or png < jpeg) else "image/jpeg"


@router.post(
    "/v1/pose/render",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/png": {}},
            "description": f"the image with every person drawn; the pose JSON (as /v1/pose "
            f"answers) in the {RESULT_HEADER} header",
        },
        **ERROR_RESPONSES,
    },
    openapi_extra=binary_body("image", SUPPORTED),
    summary="Estimate poses and draw them: a JPEG or PNG (per Accept) of the skeletons",
)
async def pose_render(
    request: Request,
    options: Annotated[PoseRenderOptions, Query()],
    services: ServicesDep,
    client: ClientDep,
) -> Response:
    upload: list[bytes] = []
    pose_options = PoseOptions(**options.model_dump(include=set(PoseOptions.model_fields)))
    result = await estimate_pose(
        services, pose_options, _loader(request, services.settings, upload)
    )
    kind = media_type(request.headers.get("accept", ""))

    def paint() -> bytes:  # the pipeline has decoded it once already; the gateway draws here
        return encode(draw(decode(upload[0]), result.persons, options), kind)

    body = await run_in_threadpool(paint)
    return Response(body, media_type=kind, headers={RESULT_HEADER: result.model_dump_json()})
