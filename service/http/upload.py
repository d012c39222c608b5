"""Read the bytes of a request: a multipart file field or the raw body, bounded in size and in
time (a client that sends too slowly, or stops, is cut off with 408)."""

from __future__ import annotations

import asyncio

from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.app.errors import ApiError, PayloadTooLarge, RequestTimeout
from service.app.timeouts import within_idle
from service.settings import Settings

FILE_FIELDS = ("file", "image")


async def read_body(request: Request, limit: int, total_s: float, idle_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(total_s):
            async for chunk in within_idle(request.stream(), idle_s, "the upload"):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the upload took longer than {total_s:g} s") from None
    return b"".join(chunks)


async def read_upload(
    request: Request, settings: Settings, limit: int, invalid: type[ApiError]
) -> bytes:
    """Multipart: the ``file`` (or ``image``, or only) file field. Anything else: the raw body.
    A malformed or file-less multipart body raises ``invalid``."""
    body = await read_body(request, limit, settings.upload_timeout_s, settings.idle_timeout_s)
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
