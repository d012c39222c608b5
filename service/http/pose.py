"""``POST /v1/pose``: one image in (multipart or raw body), persons and keypoints out."""

from __future__ import annotations

import secrets
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
    summary="Detect every person (or hand) in an image and estimate its keypoints",
)
async def pose(
    request: Request,
    options: Annotated[PoseOptions, Query()],
    services: ServicesDep,
    client: ClientDep,
) -> PoseResponse:
    return await estimate_pose(services, options, *_loader(request, services.settings))


def _loader(request: Request, settings, keep: list[bytes] | None = None):
    """``load`` and ``receive`` for ``estimate_pose``: receives the upload before a slot is
    taken, checks it once admitted (the pipeline decodes it); ``keep`` gets the bytes when the
    gateway needs them too."""
    body = keep if keep is not None else []

    async def receive() -> None:
        body.append(await read_upload(request, settings, settings.max_upload_bytes, InvalidImage))

    async def load() -> ImageIn:
        return inspect(body[0], settings.max_image_pixels)

    return load, receive


class PoseRenderOptions(PoseOptions, RenderQuery):
    """``/v1/pose``'s options and how to draw."""


RESULT_HEADER, PERSONS_HEADER = "X-Pose-Result", "X-Pose-Persons"
# HTTP clients and proxies refuse long header lines (Python's http.client: 64 KiB; nginx: 4-8
# KiB by default); a crowd's JSON goes in the multipart answer instead
MAX_RESULT_HEADER = 16 * 1024
FORM = "multipart/form-data"


def media_type(accept: str) -> str:
    """image/png when Accept names it before image/jpeg, else JPEG."""
    accept = accept.lower()
    png, jpeg = accept.find("image/png"), accept.find("image/jpeg")
    return "image/png" if png >= 0 and (jpeg < 0 or png < jpeg) else "image/jpeg"


def form_parts(result: bytes, image: bytes, kind: str) -> tuple[bytes, str]:
    """A multipart/form-data body (browsers read it with ``response.formData()``): ``result``
    (the pose JSON) and ``image`` (the drawing)."""
    boundary = secrets.token_hex(16)
    ext = "png" if kind == "image/png" else "jpg"
    body = b"".join([
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"result\"\r\n".encode(),
        b"Content-Type: application/json\r\n\r\n", result, b"\r\n",
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
        f"filename=\"pose.{ext}\"\r\nContent-Type: {kind}\r\n\r\n".encode(),
        image, f"\r\n--{boundary}--\r\n".encode(),
    ])  # fmt: skip
    return body, f"{FORM}; boundary={boundary}"


@router.post(
    "/v1/pose/render",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/png": {}, FORM: {}},
            "description": "the image with every person drawn (JPEG, or PNG when Accept asks "
            f"for image/png). The pose JSON, as /v1/pose answers it, is in the {RESULT_HEADER} "
            f"header when it fits in {MAX_RESULT_HEADER // 1024} KiB ({PERSONS_HEADER} always "
            f"gives the count); with Accept: {FORM} the answer has two parts, result (the JSON, "
            "whatever its size) and image",
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
    drawn: list[bytes] = []
    pose_options = PoseOptions(**options.model_dump(include=set(PoseOptions.model_fields)))
    accept = request.headers.get("accept", "")
    kind = media_type(accept)

    async def paint(result: PoseResponse) -> None:  # in the request's slot: drawing is work
        def drawing() -> bytes:  # the pipeline has decoded it once already; the gateway draws
            return encode(draw(decode(upload[0]), result.persons, options), kind)

        drawn.append(await run_in_threadpool(drawing))

    result = await estimate_pose(
        services, pose_options, *_loader(request, services.settings, upload), then=paint
    )
    image = drawn[0]
    data = result.model_dump_json().encode()
    headers = {PERSONS_HEADER: str(len(result.persons))}
    if FORM in accept.lower():
        body, form_type = form_parts(data, image, kind)
        return Response(body, media_type=form_type, headers=headers)
    if len(data) <= MAX_RESULT_HEADER:
        headers[RESULT_HEADER] = data.decode()
    return Response(image, media_type=kind, headers=headers)
