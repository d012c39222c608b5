"""``POST /v1/pose/video``: a video file in, one NDJSON line per frame out, as it is decoded.

Everything that can be refused (options, models, size, format, corrupt file, declared frame count
or duration) is refused before the response starts, with the usual JSON error. Once streaming,
a frame that cannot be decoded gets a line with ``error`` set; a stream that goes over a limit
or loses Triton ends with a last line holding only ``{"error": {...}}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import ExitStack, aclosing
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from service.app.errors import ApiError, InvalidVideo
from service.app.options import StreamOptions
from service.app.schemas import FrameResult
from service.app.video.container import VIDEO_TYPES, decode, probe
from service.app.video.session import StreamModels, StreamSession, run_stream
from service.metrics.record import observe_error

from .deps import ClientDep, ServicesDep
from .errors import STREAM_ERROR_RESPONSES, binary_body
from .upload import read_upload

router = APIRouter()


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


@router.post(
    "/v1/pose/video",
    response_class=NDJSONResponse,
    responses={
        200: {"model": FrameResult, "description": "one FrameResult per line, in frame order"},
        **STREAM_ERROR_RESPONSES,
    },
    openapi_extra=binary_body("video", VIDEO_TYPES),
    summary="Track every person through a video: one JSON line of poses per frame",
)
async def pose_video(
    request: Request,
    options: Annotated[StreamOptions, Query()],
    services: ServicesDep,
    client: ClientDep,
) -> NDJSONResponse:
    settings = services.settings
    models = StreamModels.resolve(services.index, options)
    slot = ExitStack()
    slot.enter_context(services.streams.reserve(client))  # held until the last line is sent
    try:
        data = await read_upload(request, settings, settings.max_video_bytes, InvalidVideo)
        limits = (settings.max_video_frames, settings.max_video_seconds, settings.max_image_pixels)
        info = await run_in_threadpool(probe, data, *limits)
    except BaseException:
        slot.close()
        raise
    session = StreamSession(services, models, options, fps=info.fps)
    # closed by the stream's end, or (if it never starts: the client left) after the response
    return NDJSONResponse(
        _lines(slot, session, data, info.codec), background=BackgroundTask(slot.close)
    )


async def _lines(
    slot: ExitStack, session: StreamSession, data: bytes, codec: str
) -> AsyncIterator[bytes]:
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
        finally:
            slot.close()
