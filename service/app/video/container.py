"""Video files (MP4, WebM, Matroska, AVI) -> decoded frames, with PyAV.

``probe`` refuses what is not a video, is corrupt or declares more frames or seconds than the
limits before any response starts; ``decode`` then yields one ``FrameInput`` per frame, or per
packet that fails to decode (the stream goes on). All FFmpeg calls of one video run on its own
worker thread, one after the other, so closing the container can never race a decode, even
when the client goes away mid-stream.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error

from ..errors import InvalidVideo, PayloadTooLarge, UnsupportedMediaType
from .session import FrameInput

VIDEO_TYPES = ("mp4", "webm", "x-matroska", "x-msvideo", "quicktime")  # video/* accepted


def sniff_container(data: bytes) -> str | None:
    """The container named by the file's magic bytes (clients often send a generic type)."""
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp", b"moof"):
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # also WebM
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    return None


@dataclass(frozen=True)
class VideoInfo:
    container: str
    codec: str
    width: int
    height: int
    fps: float | None
    frames: int | None  # as declared by the container
    seconds: float | None  # as declared by the container


def _open(data: bytes) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as exc:
        raise InvalidVideo(f"the video is corrupt or truncated: {exc}") from exc


def probe(data: bytes, max_frames: int, max_seconds: float, max_pixels: int) -> VideoInfo:
    """Raises 415 (not a video), 400 (corrupt) or 413 (declared over a limit)."""
    if not data:
        raise InvalidVideo("the request carries no video (empty body or file)")
    kind = sniff_container(data)
    if kind is None:
        raise UnsupportedMediaType(
            "not a supported video: expected MP4, WebM, Matroska or AVI content"
        )
    with _open(data) as container:
        if not container.streams.video:
            raise UnsupportedMediaType(f"the {kind} file has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate
        seconds = None
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration:
            seconds = container.duration / av.time_base
        info = VideoInfo(
            container=kind,
            codec=ctx.name,
            width=ctx.width,
            height=ctx.height,
            fps=float(rate) if isinstance(rate, Fraction) and rate > 0 else None,
            frames=stream.frames or None,
            seconds=seconds,
        )
    if info.width * info.height > max_pixels:
        raise PayloadTooLarge(
            f"video frames are {info.width}x{info.height} pixels; the limit is {max_pixels}"
        )
    if info.frames and info.frames > max_frames:
        raise PayloadTooLarge(f"the video has {info.frames} frames; the limit is {max_frames}")
    if info.seconds and info.seconds > max_seconds:
        raise PayloadTooLarge(
            f"the video lasts {info.seconds:.1f} s; the limit is {max_seconds:g} s"
        )
    return info


def _frames(container: av.container.InputContainer, codec: str) -> Iterator[FrameInput]:
    stream = container.streams.video[0]
    packets = container.demux(stream)
    while True:
        start = time.perf_counter()
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            yield FrameInput(None, codec, error=InvalidVideo(f"corrupt video data: {exc}"))
            return  # the demuxer cannot go on
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            when = float(packet.pts * packet.time_base) if packet.pts is not None else None
            error = InvalidVideo(f"a corrupt frame could not be decoded: {exc}")
            yield FrameInput(None, codec, when, error, (time.perf_counter() - start) * 1e3)
            continue
        for frame in frames:
            image = frame.to_ndarray(format="bgr24")
            yield FrameInput(image, codec, frame.time, None, (time.perf_counter() - start) * 1e3)
            start = time.perf_counter()


async def decode(data: bytes, codec: str) -> AsyncIterator[FrameInput]:
    """Decoded frames in presentation order; closing the iterator closes the container."""
    worker = ThreadPoolExecutor(1, thread_name_prefix="video-decode")
    loop = asyncio.get_running_loop()
    container: av.container.InputContainer | None = None
    frames: Iterator[FrameInput] | None = None
    try:
        container = await loop.run_in_executor(worker, _open, data)
        frames = _frames(container, codec)
        while (frame := await loop.run_in_executor(worker, next, frames, None)) is not None:
            yield frame
    finally:
        # Queued behind any decode still running on the worker; the thread then ends.
        worker.submit(_close, frames, container)
        worker.shutdown(wait=False)


def _close(frames: Iterator[FrameInput] | None, container: av.container.InputContainer | None):
    if frames is not None:
        frames.close()  # type: ignore[attr-defined]  # a generator
    if container is not None:
        container.close()
