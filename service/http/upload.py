"""Read the bytes of a request: a multipart file field or the raw body, bounded in size and in
time. An upload is received before its image takes a processing slot, so a slow client holds
none; it holds one of the ``max_reading`` receiving places instead (``Reading``), and is cut
off with 408 when it goes silent, takes too long, or averages less than ``min_upload_rate``
bytes/s once ``upload_grace_s`` is over: a client trickling a byte now and then (slowloris)
holds its place for the grace period only."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.app.errors import ApiError, PayloadTooLarge, RequestTimeout
from service.settings import Settings

FILE_FIELDS = ("file", "image")
# uvloop's clock and timers count whole milliseconds: a little more, so that no client is cut
# off before its time is really up
TIMER_SLACK_S = 0.005


@dataclass(frozen=True)
class Pace:
    """How fast an upload must come: whole within ``total_s``, never silent for ``idle_s``,
    and averaging ``min_rate`` bytes/s (0: any) once ``grace_s`` has passed."""

    total_s: float
    idle_s: float
    min_rate: float = 0.0
    grace_s: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Pace:
        return cls(
            settings.upload_timeout_s,
            settings.idle_timeout_s,
            settings.min_upload_rate,
            settings.upload_grace_s,
        )

    def deadline(self, start: float, last: float, received: int) -> tuple[float, str]:
        """When the next piece must have come, and what the client did wrong if it has not."""
        due = [
            (start + self.total_s, f"the upload took longer than {self.total_s:g} s"),
            (last + self.idle_s, f"the upload stalled: nothing for {self.idle_s:g} s"),
        ]
        if self.min_rate > 0:  # the moment the average would fall below the minimum
            due.append((
                start + max(self.grace_s, received / self.min_rate),
                f"the upload is slower than {self.min_rate:g} bytes/s",
            ))  # fmt: skip
        return min(due)


async def read_body(request: Request, limit: int, pace: Pace) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    loop = asyncio.get_running_loop()
    chunks, size = [], 0
    stream = request.stream()
    start = last = loop.time()
    while True:
        due, why = pace.deadline(start, last, size)
        try:
            async with asyncio.timeout_at(due + TIMER_SLACK_S):
                chunk = await anext(stream, None)
        except TimeoutError:
            raise RequestTimeout(why) from None
        if chunk is None:
            return b"".join(chunks)
        last = loop.time()
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)


async def read_upload(
    request: Request, settings: Settings, limit: int, invalid: type[ApiError]
) -> bytes:
    """Multipart: the ``file`` (or ``image``, or only) file field. Anything else: the raw body.
    A malformed or file-less multipart body raises ``invalid``; 503 when the gateway already
    receives its limit of uploads (from everyone, or from this client's address)."""
    reading = request.app.state.services.admission.reading
    with reading.receiving(request.client.host if request.client else ""):
        body = await read_body(request, limit, Pace.from_settings(settings))
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
    except Exception as exc:
        raise invalid(f"malformed multipart body: {exc}") from exc
    files = {k: v for k, v in form.multi_items() if isinstance(v, UploadFile)}
    upload = next((files[k] for k in FILE_FIELDS if k in files), None)
    if upload is None and len(files) == 1:
        upload = next(iter(files.values()))
    if upload is None:
        raise invalid("multipart body has no file field named 'file'")
    return await upload.read()
