"""The Python client: ``Client`` (sync) and ``AsyncClient`` over the HTTP API, video streams
over gRPC; retries with backoff on 429/503 honouring ``Retry-After``.

    from rtmserve.client import Client

    with Client("http://localhost:8080", api_key=None) as client:
        result = client.estimate("photo.jpg", score_threshold=0.5)
        for person in result.persons:
            print(person.score, person.keypoints[0].x)
        cv2.imwrite("drawn.jpg", result.render(style="openpose"))
        results = client.estimate_many(paths, concurrency=4)
        for frame in client.stream("clip.mp4", det_interval=5):
            print(frame.frame_index, [p.track_id for p in frame.persons])
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import httpx

from service.app.options import PoseOptions
from service.app.render import RenderQuery
from service.app.schemas import FrameResult, ModelsResponse

from .images import ImageLike, to_bytes
from .results import PoseResult, RtmserveError
from .retry import RESUME_GRPC, RETRY_GRPC, RETRY_STATUS, Attempts, RetryPolicy, retry_after_seconds

DEFAULT_URL = "http://localhost:8080"


def _params(options: dict[str, Any]) -> dict[str, Any]:
    """Validated as the server will (a typo fails here, not after an upload)."""
    checked = PoseOptions(**options).model_dump(exclude_none=True, exclude_defaults=True)
    return {k: str(v).lower() if isinstance(v, bool) else v for k, v in checked.items()}


def _error(r: httpx.Response) -> RtmserveError:
    try:
        err = r.json()["error"]
        return RtmserveError(r.status_code, err["code"], err["message"])
    except (ValueError, KeyError, TypeError):
        return RtmserveError(r.status_code, "http_error", r.text[:500])


def _retry_after(r: httpx.Response) -> float | None:
    return retry_after_seconds(r.headers.get("retry-after"))


def form_parts(r: httpx.Response) -> dict[str, bytes]:
    """The named parts of a multipart/form-data answer (``/v1/pose/render``'s: result, image)."""
    head = f"Content-Type: {r.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=default).parsebytes(head + r.content)
    return {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
            for p in message.iter_parts()}  # fmt: skip


def _headers(api_key: str | None) -> dict[str, str]:
    return {"x-api-key": api_key} if api_key else {}


class _Base:
    _transport: type = httpx.Client

    def __init__(self, url: str = DEFAULT_URL, *, grpc_target: str | None = None,
                 api_key: str | None = None, timeout: float = 120.0,
                 retry: RetryPolicy | None = None, pixels_as: str = "jpeg",
                 jpeg_quality: int = 95, ca_file: str | Path | None = None) -> None:  # fmt: skip
        """``ca_file``: the PEM certificate(s) to trust for an https ``url`` and its gRPC port
        (a server's self-signed certificate, RTMSERVE_TLS_CERT); else the system's."""
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._http = self._transport(base_url=url, timeout=timeout, headers=_headers(api_key),
                                     limits=httpx.Limits(max_connections=64),
                                     verify=verify)  # fmt: skip
        self._tls = httpx.URL(url).scheme == "https"  # the gRPC port speaks TLS too
        self._roots = Path(ca_file).read_bytes() if ca_file else None
        self.url, self.api_key, self.retry = url, api_key, retry or RetryPolicy()
        self.pixels_as, self.jpeg_quality = pixels_as, jpeg_quality
        self.grpc_target = grpc_target or f"{httpx.URL(url).host}:50051"
        self.retries = 0  # retries made so far (benchmarks and tests read it)
        self._lock = threading.Lock()

    def _retried(self) -> None:
        with self._lock:
            self.retries += 1

    def _outcome(self, attempts: Attempts, r: httpx.Response | None,
                 exc: Exception | None) -> httpx.Response | float:  # fmt: skip
        """The response to return, or the seconds to wait before the next attempt; raises the
        error once the policy is spent (or at once, for what a retry cannot fix)."""
        if r is not None:
            if r.status_code < 400:
                return r
            if r.status_code not in RETRY_STATUS:
                raise _error(r)
            wait, error = attempts.next_wait(_retry_after(r)), _error(r)
        else:  # refused or reset: the gateway is restarting
            wait, error = attempts.next_wait(None), exc
        if wait is None:
            raise error  # type: ignore[misc]
        self._retried()
        return wait

    def _bytes(self, image: ImageLike) -> bytes:
        return to_bytes(image, self.pixels_as, self.jpeg_quality)

    def _result(self, r: httpx.Response, image: ImageLike) -> PoseResult:
        result = PoseResult.model_validate_json(r.content)
        result._image = image
        return result

    def stream(
        self, source: str | Path | Iterable[ImageLike], **config: Any
    ) -> Iterator[FrameResult]:
        """One ``FrameResult`` per frame, in order, over the gRPC stream. ``source``: a video
        file, a folder of images, or an iterable of images (paths, bytes, arrays, PIL);
        ``config``: the StreamConfig fields (det_interval, pose_model, smoothing, fps, ...).

        A stream refused at its start (UNAVAILABLE, RESOURCE_EXHAUSTED) is retried. One from a
        file or folder that breaks midway (the server went away: behind a load balancer, the
        next call reaches another replica) resumes from the next frame: no frame is lost or
        answered twice, frame indices continue, and the first resumed result says so in its
        warnings (track IDs restart: the new server never saw the earlier frames)."""
        import grpc

        from service.grpc.gen import pose_pb2 as pb

        from .grpc import SourceFrame, frame_result, frames_from
        from .grpc import stream as grpc_stream

        replayable = isinstance(source, str | Path)

        def frames(skip: int):
            if replayable:
                yield from itertools.islice(frames_from(Path(source)), skip, None)  # type: ignore[arg-type]
            else:
                for image in source:  # type: ignore[union-attr]
                    yield SourceFrame(pb.Image(encoded=self._bytes(image)), None)

        metadata = tuple(_headers(self.api_key).items())
        attempts = Attempts(self.retry)
        answered, resumed = 0, False
        while True:
            started = False
            try:
                for message in grpc_stream(self.grpc_target, pb.StreamConfig(**config),
                                           frames(answered), metadata, self._roots,
                                           self._tls):  # fmt: skip
                    started = True
                    result = frame_result(message)
                    result.frame_index = answered  # the source's index, across resumptions
                    if resumed:
                        result.warnings.append(
                            f"stream resumed at frame {answered} on another server: track IDs "
                            "restart"
                        )
                        resumed = False
                    answered += 1
                    yield result
                return
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                again = RESUME_GRPC if started else RETRY_GRPC
                wait = attempts.next_wait(_grpc_retry_after(exc)) if code.name in again else None
                if wait is None or (answered and not replayable):
                    raise RtmserveError(code.name, code.name.lower(), exc.details()) from exc  # type: ignore[attr-defined]
                resumed = answered > 0
                self._retried()
                time.sleep(wait)


def _grpc_retry_after(exc: Any) -> float | None:
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            return retry_after_seconds(value)
    return None


class Client(_Base):
    """Synchronous client; thread-safe (``estimate_many`` shares it across threads)."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempts = Attempts(self.retry)
        while True:
            try:
                r, exc = self._http.request(method, path, **kwargs), None
            except httpx.TransportError as error:
                r, exc = None, error
            outcome = self._outcome(attempts, r, exc)
            if isinstance(outcome, httpx.Response):
                return outcome
            time.sleep(outcome)

    def estimate(self, image: ImageLike, **options: Any) -> PoseResult:
        """Poses in one image (a path, bytes, a BGR numpy array or a PIL image); ``options``
        as ``POST /v1/pose``'s (score_threshold, max_persons, pose_model, detector, keypoints)."""
        r = self._send("POST", "/v1/pose", content=self._bytes(image),
                       params=_params(options))  # fmt: skip
        return self._result(r, image)

    def estimate_many(self, images: Sequence[ImageLike], concurrency: int = 4,
                      **options: Any) -> list[PoseResult]:  # fmt: skip
        """Every image, at most ``concurrency`` requests in flight; results in input order."""
        with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="rtmserve-client") as pool:
            return list(pool.map(lambda image: self.estimate(image, **options), images))

    def render(self, image: ImageLike, *, png: bool = False,
               **options: Any) -> tuple[bytes, PoseResult]:  # fmt: skip
        """The server's drawing (``POST /v1/pose/render``): JPEG (or PNG) bytes and the result.
        ``options``: /v1/pose's and the renderer's (style, kpt_thr, radius, ...)."""
        draw = RenderQuery(**{k: v for k, v in options.items() if k in RenderQuery.model_fields})
        pose = {k: v for k, v in options.items() if k not in RenderQuery.model_fields}
        params = {**_params(pose), **{k: str(v).lower() if isinstance(v, bool) else v
                                      for k, v in draw.model_dump().items()}}  # fmt: skip
        accept = f"multipart/form-data, image/{'png' if png else 'jpeg'}"
        r = self._send("POST", "/v1/pose/render", content=self._bytes(image),
                       params=params, headers={"accept": accept})  # fmt: skip
        parts = form_parts(r)
        result = PoseResult.model_validate_json(parts["result"])
        result._image = image
        return parts["image"], result

    def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate_json(self._send("GET", "/v1/models").content)


class AsyncClient(_Base):
    """asyncio client: the same calls, awaited (``stream`` stays a sync iterator over gRPC)."""

    _transport = httpx.AsyncClient

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempts = Attempts(self.retry)
        while True:
            try:
                r, exc = await self._http.request(method, path, **kwargs), None
            except httpx.TransportError as error:
                r, exc = None, error
            outcome = self._outcome(attempts, r, exc)
            if isinstance(outcome, httpx.Response):
                return outcome
            await asyncio.sleep(outcome)

    async def estimate(self, image: ImageLike, **options: Any) -> PoseResult:
        data = await asyncio.to_thread(self._bytes, image)
        r = await self._send("POST", "/v1/pose", content=data, params=_params(options))
        return self._result(r, image)

    async def estimate_many(self, images: Sequence[ImageLike], concurrency: int = 4,
                            **options: Any) -> list[PoseResult]:  # fmt: skip
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(image: ImageLike) -> PoseResult:
            async with gate:
                return await self.estimate(image, **options)

        return list(await asyncio.gather(*(one(image) for image in images)))

    async def models(self) -> ModelsResponse:
        return ModelsResponse.model_validate_json((await self._send("GET", "/v1/models")).content)

    async def astream(self, source: str | Path | Iterable[ImageLike],
                      **config: Any) -> AsyncIterator[FrameResult]:  # fmt: skip
        """``stream`` for asyncio code: the gRPC iterator runs on a worker thread."""
        it = self.stream(source, **config)
        done = object()
        while (item := await asyncio.to_thread(next, it, done)) is not done:
            yield item  # type: ignore[misc]
