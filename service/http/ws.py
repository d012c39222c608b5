"""``/v1/pose/ws``: the video stream for browsers, which cannot speak gRPC.

The same session as the gRPC ``Stream`` (``service.app.video.session``): tracking, smoothing,
det_interval. Messages:

- client -> server, first: a text message, the StreamConfig as JSON (``{}`` for defaults);
  then each frame as a binary message (JPEG, PNG, WebP or BMP), optionally preceded by a text
  message ``{"timestamp": seconds}`` (else the arrival time is used);
- server -> client: one text message per answered frame, a ``FrameResult`` as JSON; a last
  ``{"error": {...}}`` when the stream is refused or fails, then the socket closes.

Backpressure: at most one frame waits. A frame that arrives while another waits replaces it
(the older one is dropped, and the next result's warnings say how many were), so a client that
sends faster than the service answers sees fresh frames, never a growing queue. The page at
``/`` sends a frame only when the previous result came back, which never drops.

Browsers cannot set headers on a WebSocket: the API key may come as ``?api_key=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from service.app.access import presented_key
from service.app.context import Services
from service.app.decode import decode_image
from service.app.errors import ApiError, InvalidParameter
from service.app.options import StreamOptions, validated
from service.app.video.session import FrameInput, StreamModels, StreamSession, run_stream
from service.metrics.families import CLIENT_REQUESTS
from service.metrics.record import observe_error

router = APIRouter()

CLOSE_CODES = {401: 1008, 403: 1008, 429: 1013, 503: 1013}  # policy violation, try again later


async def _config(ws: WebSocket, idle: float) -> StreamOptions:
    try:
        text = await asyncio.wait_for(ws.receive_text(), idle)
        fields = json.loads(text)
    except TimeoutError:
        raise InvalidParameter(f"no StreamConfig within {idle:g} s") from None
    except (json.JSONDecodeError, KeyError):
        raise InvalidParameter("the first message must be the StreamConfig as JSON text") from None
    if not isinstance(fields, dict):
        raise InvalidParameter("the StreamConfig must be a JSON object")
    fields.pop("api_key", None)
    return validated(StreamOptions, fields)


@router.websocket("/v1/pose/ws")
async def pose_ws(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    await ws.accept()
    try:
        key = presented_key(ws.headers.get("x-api-key") or ws.query_params.get("api_key"),
                            ws.headers.get("authorization"))  # fmt: skip
        client = services.access.authenticate(key)
        CLIENT_REQUESTS.labels("ws", client).inc()
        options = await _config(ws, services.settings.idle_timeout_s)
        models = StreamModels.resolve(services.index, options)
        with services.streams.reserve(client):
            await _serve(ws, StreamSession(services, models, options), services)
    except ApiError as exc:
        observe_error("ws", exc.code)
        if ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):  # the client may be gone already
                await ws.send_text(json.dumps(exc.body()))
                await ws.close(CLOSE_CODES.get(exc.status, 1008 if exc.status < 500 else 1011))
    except WebSocketDisconnect:
        pass


async def _serve(ws: WebSocket, session: StreamSession, services: Services) -> None:
    waiting: asyncio.Queue[tuple[bytes, float | None] | None] = asyncio.Queue(maxsize=1)
    dropped = [0]
    start = time.monotonic()

    def offer(item: tuple[bytes, float | None] | None) -> None:
        if waiting.full() and waiting.get_nowait() is not None:
            dropped[0] += 1
        waiting.put_nowait(item)

    async def receive() -> None:
        timestamp: float | None = None
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        timestamp = float(json.loads(message["text"])["timestamp"])
                    continue
                if message.get("bytes") is not None:
                    offer((message["bytes"], timestamp if timestamp is not None
                           else time.monotonic() - start))  # fmt: skip
                    timestamp = None
        finally:
            offer(None)  # the end: the session finishes what it has

    max_pixels, idle = services.settings.max_image_pixels, services.settings.idle_timeout_s

    async def frames() -> AsyncIterator[FrameInput]:
        while True:
            try:
                item = await asyncio.wait_for(waiting.get(), idle)
            except TimeoutError:
                return
            if item is None:
                return
            yield await asyncio.to_thread(_frame, *item, max_pixels)

    receiver = asyncio.create_task(receive())
    try:
        async with contextlib.aclosing(run_stream(session, frames(), api="ws")) as results:
            async for result in results:
                if dropped[0]:
                    result.warnings.append(
                        f"{dropped[0]} frames dropped: sent faster than the service answers"
                    )
                    dropped[0] = 0
                await ws.send_text(result.model_dump_json())
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await receiver
    if ws.client_state == WebSocketState.CONNECTED:
        await ws.close(1000)


def _frame(data: bytes, timestamp: float | None, max_pixels: int) -> FrameInput:
    t = time.perf_counter()
    try:
        image, fmt = decode_image(data, max_pixels)
    except ApiError as exc:
        return FrameInput(None, "", timestamp, exc, (time.perf_counter() - t) * 1e3)
    return FrameInput(image, fmt, timestamp, None, (time.perf_counter() - t) * 1e3)
