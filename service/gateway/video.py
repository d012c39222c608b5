"""``POST /v1/pose/video``: a video file in, one NDJSON line per frame out, as it is decoded.

Everything that can be refused (options, models, size, format, corrupt file, declared frame count
or duration) is refused before the response starts, with the usual JSON error. Once streaming,
a frame that cannot be decoded gets a line with ``error`` set; a stream that goes over a limit
or loses Triton ends with a last line holding only ``{"error": {...}}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from service.metrics.observe import observe_error
from service.settings import Settings
from service.triton.client import PipelineClient
from service.video.container import InvalidVideo, decode, probe
from service.video.options import StreamOptions
from service.video.schemas import FrameResult
from service.video.session import StreamModels, StreamSession, run_stream

from .deps import get_client, get_index, get_settings
from .errors import ApiError
from .models import ModelIndex
from .schemas import ErrorResponse
from .upload import read_upload

router = APIRouter()

NDJSON = "application/x-ndjson"
VIDEO_TYPES = ("mp4", "webm", "x-matroska", "x-msvideo", "quicktime")
BINARY = {"type": "string", "format": "binary"}
VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": BINARY},
                    "required": ["file"],
                }
            },
            **{f"video/{t}": {"schema": BINARY} for t in VIDEO_TYPES},
        },
    }
}
RESPONSES = {
    200: {"model": FrameResult, "description": "one FrameResult per line, in frame order"},
    **{code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422, 503)},
}


class NDJSONResponse(StreamingResponse):
    media_type = NDJSON


@router.post(
    "/v1/pose/video",
    response_class=NDJSONResponse,
    responses=RESPONSES,
    openapi_extra=VIDEO_BODY,
    summary="Track every person through a video: one JSON line of poses per frame",
)
async def pose_video(
    request: Request,
    options: Annotated[StreamOptions, Query()],
    settings: Settings = Depends(get_settings),
    client: PipelineClient = Depends(get_client),
    index: ModelIndex = Depends(get_index),
) -> NDJSONResponse:
    models = StreamModels.resolve(index, options)
    data = await read_upload(request, settings.max_video_bytes, InvalidVideo)
    limits = (settings.max_video_frames, settings.max_video_seconds, settings.max_image_pixels)
    info = await run_in_threadpool(probe, data, *limits)
    session = StreamSession(client, models, options, settings, fps=info.fps)
    return NDJSONResponse(_lines(session, data, info.codec))


async def _lines(session: StreamSession, data: bytes, codec: str) -> AsyncIterator[bytes]:
    async with (
        aclosing(decode(data, codec)) as frames,
        aclosing(run_stream(session, frames)) as results,
    ):
        try:
            async for result in results:
                yield result.model_dump_json().encode() + b"\n"
        except ApiError as exc:  # over a limit, or Triton went away: say why, then stop
            observe_error("http", exc.code)
            yield json.dumps(exc.body()).encode() + b"\n"
