"""Video files (MP4, WebM, Matroska, AVI) -> decoded frames, with PyAV.

``probe`` refuses what is not a video, is corrupt or declares more frames or seconds than the
limits before any response starts; ``decode`` then yields one ``FrameInput`` per frame, or per
packet that fails to decode (the stream goes on). All FFmpeg calls of one video run on its own
worker thread, one after the other, so closing the container can never race a decode, even
when the client goes away mid-stream.

An upload is hostile until proven otherwise. FFmpeg left to probe picks any of its demuxers:
Matroska's magic followed by SDP text is taken by the ``sdp`` demuxer, which binds UDP ports,
and HLS or concat playlists open files and URLs. So the demuxer is the one the magic bytes name
(``format=``) and nothing else, no protocol may be opened (the bytes come from memory), only
the video decoders in ``CODECS`` run, and every decoder refuses frames over the pixel limit
before allocating them: a container's declared size is a claim, each frame's is checked.
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

# the sniffed container -> the only FFmpeg demuxer that may read it
DEMUXERS = {"mp4": "mov", "matroska": "matroska", "avi": "avi"}
# video codecs (FFmpeg's names) -> the decoders allowed to read them; any other stream's codec,
# audio included, is never decoded, not even while FFmpeg probes the streams
CODECS = {
    "av1": ("libdav1d", "av1"),
    "h264": ("h264",),
    "hevc": ("hevc",),
    "mjpeg": ("mjpeg",),
    "mpeg2video": ("mpeg2video",),
    "mpeg4": ("mpeg4",),
    "vp8": ("vp8",),
    "vp9": ("vp9",),
}
DECODERS = ",".join(sorted({d for names in CODECS.values() for d in names}))
FIRST_FRAME_PACKETS = 32  # how far probe looks for the first decoded frame (decoder delay)


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
    frames: int | None  # the video packets counted (or the container's claim, if larger)
    seconds: float | None  # the last packet's time (or the container's claim, if later)
    max_pixels: int  # each decoded frame is checked against it


def _options(kind: str, max_pixels: int) -> dict[str, str]:
    """FFmpeg's options for the container and its decoders: the locks described above."""
    return {
        "format_whitelist": DEMUXERS[kind],
        "protocol_whitelist": "none",  # no file, network or nested playlist opens
        "enable_drefs": "0",  # MP4 external data references stay unopened
        "codec_whitelist": DECODERS,  # also the decoders run while probing the streams
        "max_pixels": str(max_pixels),  # a decoder refuses a bigger frame before allocating it
    }


def _open(data: bytes, kind: str, max_pixels: int) -> av.container.InputContainer:
    try:
        return av.open(
            io.BytesIO(data),
            mode="r",
            format=DEMUXERS[kind],
            options=_options(kind, max_pixels),
            metadata_errors="replace",  # tags not in UTF-8 (strict: UnicodeDecodeError, a 500)
        )
    except av.error.FFmpegError as exc:
        raise InvalidVideo(f"the video is corrupt or truncated: {exc}") from exc


def _video_stream(
    container: av.container.InputContainer, kind: str, max_pixels: int
) -> av.VideoStream:
    """The first video stream, its decoder locked to the allowed ones and the pixel limit."""
    if not container.streams:
        raise InvalidVideo(f"the {kind} file is corrupt or truncated: it holds no stream")
    if not container.streams.video:
        raise UnsupportedMediaType(f"the {kind} file has no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context  # None when FFmpeg has no decoder for the codec at all
    codec = ctx.codec.canonical_name if ctx is not None else "unknown"
    if codec not in CODECS:
        raise UnsupportedMediaType(
            f"the video codec {codec!r} is not supported; expected one of {', '.join(CODECS)}"
        )
    ctx.options = {"codec_whitelist": DECODERS, "max_pixels": str(max_pixels)}
    return stream


def _too_large(width: int, height: int, max_pixels: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
    )


def _refused_for_size(exc: av.error.FFmpegError, stream: av.VideoStream) -> bool:
    """Whether a decode error is the decoder refusing a frame over ``max_pixels``: FFmpeg then
    answers EINVAL and clears the context's size (corrupt data answers INVALIDDATA)."""
    ctx = stream.codec_context
    return isinstance(exc, av.error.ArgumentError) and ctx.width * ctx.height == 0


def _check_frame(frame: av.VideoFrame, max_pixels: int) -> None:
    if frame.width * frame.height > max_pixels:
        raise _too_large(frame.width, frame.height, max_pixels, "a decoded frame is")
    if frame.width <= 0 or frame.height <= 0:
        raise InvalidVideo(f"a decoded frame is {frame.width}x{frame.height} pixels")


def _first_frame(stream: av.VideoStream, packet: av.Packet, max_pixels: int, declared: str) -> bool:
    """Whether ``packet`` gave a frame, which must be within the limit (the declared size may
    lie). A corrupt packet is left to the stream, which reports it frame by frame."""
    try:
        frames = packet.decode()
    except av.error.FFmpegError as exc:
        if _refused_for_size(exc, stream):
            raise PayloadTooLarge(
                f"the first frame is larger than the limit of {max_pixels} pixels "
                f"(the container declares {declared})"
            ) from None
        return False
    for frame in frames:
        _check_frame(frame, max_pixels)
        return True
    return False


def _scan(
    stream: av.VideoStream, packets: Iterator[av.Packet], max_pixels: int
) -> tuple[int, int | None]:
    """(video packets carrying data, the latest presentation time), reading every packet but
    decoding only up to the first frame; a demuxing error ends the count (the stream reports
    it where it happens)."""
    frames, last, decoding = 0, None, FIRST_FRAME_PACKETS
    declared = f"{stream.codec_context.width}x{stream.codec_context.height}"
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.error.FFmpegError):
            return frames, last
        if not packet.size:
            continue
        frames += 1
        if packet.pts is not None and (last is None or packet.pts > last):
            last = packet.pts
        if decoding:
            decoding = 0 if _first_frame(stream, packet, max_pixels, declared) else decoding - 1


def probe(data: bytes, max_frames: int, max_seconds: float, max_pixels: int) -> VideoInfo:
    """Raises 415 (not a supported video), 400 (corrupt) or 413 (over a limit). Reads every
    packet (no decoding) to count frames and time, and decodes the first frame."""
    if not data:
        raise InvalidVideo("the request carries no video (empty body or file)")
    kind = sniff_container(data)
    if kind is None:
        raise UnsupportedMediaType(
            "not a supported video: expected MP4, WebM, Matroska or AVI content"
        )
    with _open(data, kind, max_pixels) as container:
        stream = _video_stream(container, kind, max_pixels)
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if width * height > max_pixels:
            raise _too_large(width, height, max_pixels, "video frames are")
        rate = stream.average_rate
        seconds = None
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration:
            seconds = container.duration / av.time_base
        frames, last = _scan(stream, container.demux(stream), max_pixels)  # 413 first
        if width <= 0 or height <= 0:
            raise InvalidVideo(f"the video declares a frame size of {width}x{height} pixels")
        codec = ctx.name
    if last is not None and stream.time_base:
        start = stream.start_time or 0
        seconds = max(seconds or 0.0, float((last - start) * stream.time_base))
    frames = max(frames, stream.frames or 0) or None
    info = VideoInfo(
        container=kind,
        codec=codec,
        width=width,
        height=height,
        fps=float(rate) if isinstance(rate, Fraction) and rate > 0 else None,
        frames=frames,
        seconds=seconds,
        max_pixels=max_pixels,
    )
    if info.frames and info.frames > max_frames:
        raise PayloadTooLarge(f"the video has {info.frames} frames; the limit is {max_frames}")
    if info.seconds and info.seconds > max_seconds:
        raise PayloadTooLarge(
            f"the video lasts {info.seconds:.1f} s; the limit is {max_seconds:g} s"
        )
    return info


def _frames(container: av.container.InputContainer, info: VideoInfo) -> Iterator[FrameInput]:
    """One input per frame, or per packet that fails to decode; a frame over the pixel limit
    ends the stream (``PayloadTooLarge``) before it is allocated, or at least converted."""
    codec = info.codec
    stream = _video_stream(container, info.container, info.max_pixels)
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
            if _refused_for_size(exc, stream):
                raise PayloadTooLarge(
                    f"the frame at {when} s is larger than the limit of {info.max_pixels} "
                    f"pixels (the container declares {info.width}x{info.height})"
                ) from None
            error = InvalidVideo(f"a corrupt frame could not be decoded: {exc}")
            yield FrameInput(None, codec, when, error, (time.perf_counter() - start) * 1e3)
            continue
        for frame in frames:
            _check_frame(frame, info.max_pixels)
            image = frame.to_ndarray(format="bgr24")
            yield FrameInput(image, codec, frame.time, None, (time.perf_counter() - start) * 1e3)
            start = time.perf_counter()


async def decode(data: bytes, info: VideoInfo) -> AsyncIterator[FrameInput]:
    """Decoded frames in presentation order; closing the iterator closes the container."""
    worker = ThreadPoolExecutor(1, thread_name_prefix="video-decode")
    loop = asyncio.get_running_loop()
    container: av.container.InputContainer | None = None
    frames: Iterator[FrameInput] | None = None
    try:
        container = await loop.run_in_executor(worker, _open, data, info.container, info.max_pixels)
        frames = _frames(container, info)
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
