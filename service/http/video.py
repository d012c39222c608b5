"""``POST /v1/pose/video``: a video file in, one NDJSON line per frame out, as it is decoded.

Everything that can be refused (options, models, size, format, corrupt file, declared frame count
or duration) is refused before the response starts, with the usual JSON error. Once streaming,
a frame that cannot be decoded gets a line with ``error`` set; a stream that goes over a limit
or loses Triton ends with a last line holding only ``{"error": {...}}``.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import ExitStack, aclosing
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field
from starlette.background import BackgroundTask

from service.app.errors import ApiError, InvalidVideo
from service.app.options import StreamOptions
from service.app.render import RenderQuery
from service.app.schemas import FrameResult
from service.app.video.annotate import Mp4Writer, annotate
from service.app.video.container import VIDEO_TYPES, VideoInfo, decode, probe
from service.app.video.session import FrameInput, StreamModels, StreamSession, run_stream
from service.metrics.record import observe_error

from .deps import ClientDep, ServicesDep
from .errors import STREAM_ERROR_RESPONSES, binary_body
from .upload import read_upload

router = APIRouter()


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


class VideoOptions(StreamOptions, RenderQuery):
    """The stream's options; with ``render=mp4``, how to draw the annotated video."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    render: Literal["mp4"] | None = Field(
        None, description="mp4: answer with the video, every person drawn (H.264), not NDJSON"
    )


@router.post(
    "/v1/pose/video",
    response_class=NDJSONResponse,
    responses={
        200: {
            "model": FrameResult,
            "description": "one FrameResult per line, in frame order; with render=mp4 the "
            "annotated video",
            "content": {"video/mp4": {}},
        },
        **STREAM_ERROR_RESPONSES,
    },
    openapi_extra=binary_body("video", VIDEO_TYPES),
    summary="Track every person through a video: one JSON line of poses per frame",
)
async def pose_video(
    request: Request,
    query: Annotated[VideoOptions, Query()],
    services: ServicesDep,
    client: ClientDep,
) -> Response:
    settings = services.settings
    options = StreamOptions(**query.model_dump(include=set(StreamOptions.model_fields)))
    models = StreamModels.resolve(services.index, options)
    slot = ExitStack()
    slot.enter_context(services.streams.reserve(client.quota))  # held until the last line is sent
    try:
        data = await read_upload(request, settings, settings.max_video_bytes, InvalidVideo)
        limits = (settings.max_video_frames, settings.max_video_seconds, settings.max_image_pixels)
        info = await run_in_threadpool(probe, data, *limits)
    except BaseException:
        slot.close()
        raise
    session = StreamSession(services, models, options, fps=info.fps, client=client)
    if query.render == "mp4":
        try:
            video = await _mp4(session, data, info, query)
        finally:
            slot.close()
        return Response(video, media_type="video/mp4")
    # closed by the stream's end, or (if it never starts: the client left) after the response
    return NDJSONResponse(_lines(slot, session, data, info), background=BackgroundTask(slot.close))


async def _lines(
    slot: ExitStack, session: StreamSession, data: bytes, info: VideoInfo
) -> AsyncIterator[bytes]:
    async with (
        aclosing(decode(data, info)) as frames,
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


async def _mp4(session: StreamSession, data: bytes, info: VideoInfo, query: RenderQuery) -> bytes:
    """The whole stream, each frame drawn with its result and encoded as it comes."""
    images: deque = deque()

    async def kept(frames: AsyncIterator[FrameInput]) -> AsyncIterator[FrameInput]:
        async for frame in frames:
            images.append(frame.image)  # results come one per frame, in order
            yield frame

    sink = io.BytesIO()
    writer = Mp4Writer(sink, info.fps or 30.0)
    async with (
        aclosing(decode(data, info)) as frames,
        aclosing(run_stream(session, kept(frames))) as results,
    ):
        async for result in results:
            drawn = await run_in_threadpool(annotate, images.popleft(), result, query)
            if drawn is not None:
                await run_in_threadpool(writer.write, drawn)
    await run_in_threadpool(writer.close)
    return sink.getvalue()
