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

The API key: an ``X-API-Key`` or ``Authorization: Bearer`` header where the client can set
one; browsers cannot, so the first message may carry it as ``"api_key"`` (the page at ``/``
does). ``?api_key=`` in the URL still works for old clients, but URLs end up in logs and
histories: the logs redact it (``service.logs``), and new clients should not send it.

Limits per connection: text messages up to ``MAX_TEXT_BYTES``, frames up to the upload limit
(else close 1009), at most ``MESSAGE_RATE`` messages/s (burst ``MESSAGE_BURST``; else close
1008), each with a reason; every frame processed draws from the client's rate like a request,
and the stream waits for the client at most ``max_video_seconds`` of the server's time
(``StreamSession``), whatever timestamps it sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from service.app.access import TokenBucket, presented_key
from service.app.context import Services
from service.app.decode import decode_image
from service.app.errors import ApiError, InvalidParameter, PayloadTooLarge, RateLimited
from service.app.options import StreamOptions, validated
from service.app.video.session import FrameInput, StreamModels, StreamSession, run_stream
from service.metrics.families import CLIENT_REQUESTS
from service.metrics.record import observe_error

router = APIRouter()

CLOSE_CODES = {401: 1008, 403: 1008, 429: 1013, 503: 1013}  # policy violation, try again later
MAX_TEXT_BYTES = 16 * 1024  # a StreamConfig or a timestamp is well under 1 KiB
MESSAGE_RATE, MESSAGE_BURST = 100.0, 200  # per connection: a camera at 30 fps sends 60/s


class Violation(ApiError):
    """The client broke a per-connection limit: the socket closes with ``close_code``."""

    def __init__(self, error: ApiError, close_code: int) -> None:
        super().__init__(error.message)
        self.status, self.code, self.close_code = error.status, error.code, close_code


def _text_limit(text: str) -> None:
    if len(text) > MAX_TEXT_BYTES or len(text.encode()) > MAX_TEXT_BYTES:
        error = PayloadTooLarge(f"text messages are limited to {MAX_TEXT_BYTES} bytes")
        raise Violation(error, 1009)


async def _first_message(ws: WebSocket, idle: float) -> dict:
    """The first message: the StreamConfig as a JSON object (``api_key`` may be among it)."""
    try:
        message = await asyncio.wait_for(ws.receive(), idle)
    except TimeoutError:
        raise InvalidParameter(f"no StreamConfig within {idle:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise InvalidParameter("the first message must be the StreamConfig as JSON text")
    _text_limit(text)
    try:
        fields = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidParameter("the first message must be the StreamConfig as JSON text") from None
    if not isinstance(fields, dict):
        raise InvalidParameter("the StreamConfig must be a JSON object")
    return fields


@router.websocket("/v1/pose/ws")
async def pose_ws(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    await ws.accept()
    try:
        fields = await _first_message(ws, services.settings.idle_timeout_s)
        in_message = fields.pop("api_key", None)
        key = presented_key(
            ws.headers.get("x-api-key")
            or (in_message if isinstance(in_message, str) else None)
            or ws.query_params.get("api_key"),  # old clients: redacted from the logs
            ws.headers.get("authorization"),
        )
        client = services.access.authenticate(key, ws.client.host if ws.client else "")
        CLIENT_REQUESTS.labels("ws", client.name).inc()
        options = validated(StreamOptions, fields)
        models = StreamModels.resolve(services.index, options)
        with services.streams.reserve(client.quota):
            session = StreamSession(services, models, options, client=client, live=True)
            await _serve(ws, session, services)
    except ApiError as exc:
        observe_error("ws", exc.code)
        if ws.client_state == WebSocketState.CONNECTED:
            code = getattr(exc, "close_code", None) or CLOSE_CODES.get(
                exc.status, 1008 if exc.status < 500 else 1011
            )
            with contextlib.suppress(Exception):  # the client may be gone already
                await ws.send_text(json.dumps(exc.body()))
                await ws.close(code, exc.message.encode()[:120].decode(errors="ignore"))
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

    max_bytes = services.settings.max_upload_bytes
    violations: list[Violation] = []

    async def receive() -> None:
        timestamp: float | None = None
        bucket = TokenBucket(MESSAGE_RATE, MESSAGE_BURST)
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text, data = message.get("text"), message.get("bytes")
                if bucket.take() > 0:
                    limited = RateLimited(f"more than {MESSAGE_RATE:g} messages/s")
                    raise Violation(limited, 1008)
                if text is not None:
                    _text_limit(text)
                    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
                        timestamp = float(json.loads(text)["timestamp"])
                    continue
                if data is not None:
                    if len(data) > max_bytes:
                        too_big = PayloadTooLarge(f"frames are limited to {max_bytes} bytes")
                        raise Violation(too_big, 1009)
                    offer((data, timestamp if timestamp is not None
                           else time.monotonic() - start))  # fmt: skip
                    timestamp = None
        except Violation as exc:
            violations.append(exc)  # the session ends with what it has, then the socket closes
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
    if violations:
        raise violations[0]
    if ws.client_state == WebSocketState.CONNECTED:
        await ws.close(1000)


def _frame(data: bytes, timestamp: float | None, max_pixels: int) -> FrameInput:
    t = time.perf_counter()
    try:
        image, fmt = decode_image(data, max_pixels)
    except ApiError as exc:
        return FrameInput(None, "", timestamp, exc, (time.perf_counter() - t) * 1e3)
    return FrameInput(image, fmt, timestamp, None, (time.perf_counter() - t) * 1e3)
