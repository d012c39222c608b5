"""Fuzzing the gateway's parsers with Hypothesis: strategies that make hostile bytes (valid
small files mutated where their headers and sizes are, magic bytes followed by anything,
playlists and session descriptions behind a container's magic) and the properties every input
must keep. Shared by tests/unit/test_fuzz_*.py (bounded, derandomized) and bench/fuzz.py (long).

A property fails (``Crash``) when a parser lets anything but the API's own 4xx errors escape,
accepts what breaks its limits, or makes the process open a socket; Hypothesis then shrinks the
input to a small reproduction."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Callable
from functools import cache

import av
import cv2
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from service.app.decode import decode_image, inspect
from service.app.errors import ApiError
from service.app.video.container import decode as decode_video
from service.app.video.container import probe, sniff_container
from service.core.image import sniff_format
from tests.support.procs import sockets
from tests.support.streaming import write_video

MAX_PIXELS = 1_000_000  # small, so that what the parsers accept is cheap to decode
MAX_FRAMES, MAX_SECONDS = 50, 30.0
REFUSALS = {400, 413, 415}  # what a parser may answer bad bytes with
IMAGE_MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPVP8 ", b"BM"]
VIDEO_MAGIC = [b"\0\0\0\x18ftypisom", b"\0\0\0\x08moov", b"\x1a\x45\xdf\xa3", b"RIFF\0\0\0\0AVI "]
TEXTS = [  # what FFmpeg's other demuxers take: none may be reached through an upload
    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=video 5004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
    b"ffconcat version 1.0\nfile 'file:/etc/passwd'\n",
    b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:9/a.ts\n#EXT-X-ENDLIST\n",
    b"rtsp://127.0.0.1:9/x\n",
]


# codec and format names as containers spell them (Matroska ids, MP4 and AVI fourccs, PNG's)
TAGS = [
    *(b"V_VP8", b"V_VP9", b"V_AV1", b"avc1", b"hvc1", b"mp4v", b"FMP4", b"MJPG", b"rawv"),
    *(b"IHDR", b"IDAT", b"VP8 ", b"VP8L", b"webm", b"isom", b"mp42", b"XVID", b"H264"),
]


class Crash(AssertionError):
    """A parser broke a property: a bug to fix."""


def fuzz_settings(max_examples: int, **overrides) -> settings:
    """CI's: reproducible (derandomized, no example database), no per-example deadline (CPU
    time on a shared runner varies), bounded by ``max_examples``."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **overrides,
    )


@cache
def image_seeds() -> tuple[bytes, ...]:
    pixels = np.random.default_rng(0).integers(0, 255, (12, 16, 3), np.uint8)
    image = Image.fromarray(pixels)
    out = []
    for fmt, options in (("JPEG", {"quality": 80}), ("PNG", {}), ("WEBP", {}), ("BMP", {})):
        buf = io.BytesIO()
        image.save(buf, fmt, **options)
        out.append(buf.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: the upright size swaps the axes
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    out.append(buf.getvalue())
    return tuple(out)


@cache
def video_seeds() -> tuple[bytes, ...]:
    frames = [np.full((24, 32, 3), 60 * i, np.uint8) for i in range(3)]
    out = [
        write_video(frames, fmt, codec)
        for fmt, codec in (("mp4", "libx264"), ("webm", "libvpx"), ("avi", "mpeg4"))
    ]
    buf = io.BytesIO()
    with av.open(buf, "w", format="avi") as container:  # MJPEG: sizes live in every frame
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuvj420p"
        for i, image in enumerate(frames):
            packet = av.Packet(cv2.imencode(".jpg", image)[1].tobytes())
            packet.stream, packet.pts, packet.dts = stream, i, i
            container.mux(packet)
    out.append(buf.getvalue())
    return tuple(out)


def found_crashes() -> dict[str, bytes]:
    """The inputs the fuzzer found that crashed the video path (500s), replayed every run."""
    webm = write_video([np.zeros((24, 32, 3), np.uint8)] * 2, "webm", "libvpx")
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as container:
        container.metadata["title"] = "TITLE-TITLE"
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="bgr24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return {
        # a codec FFmpeg has no decoder for: the stream has no codec context (AttributeError)
        "unknown codec": webm.replace(b"V_VP8", b"V_ZZZ"),
        # a tag that is not UTF-8: PyAV's strict metadata decoding (UnicodeDecodeError)
        "non-UTF-8 title": buf.getvalue().replace(b"TITLE-TITLE", b"\x80" * 11),
    }


@st.composite
def mutated(draw: st.DrawFn, seeds: Callable[[], tuple[bytes, ...]]) -> bytes:
    """A seed file with a few edits where parsers trust the bytes: flipped bytes, 16/32-bit
    fields overwritten with extremes (sizes, counts, dimensions), inserts and truncation."""
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["flip", "field", "insert", "cut", "tag"])):
            case "flip":
                data[at : at + 1] = bytes([draw(st.integers(0, 255))])
            case "field":
                width = draw(st.sampled_from([2, 4]))
                value = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF]))
                value = min(value, (1 << (8 * width)) - 1)
                order = draw(st.sampled_from(["big", "little"]))
                data[at : at + width] = value.to_bytes(width, order)
            case "insert":
                data[at:at] = draw(st.binary(max_size=64))
            case "cut":
                del data[at:]
            case "tag":  # a codec or format name another one, or unknown to FFmpeg
                found = [t for t in TAGS if t in data]
                if found:
                    tag = draw(st.sampled_from(found))
                    other = draw(st.sampled_from([t for t in TAGS if len(t) == len(tag)]))
                    other = draw(st.sampled_from([other, b"Z" * len(tag)]))
                    data = bytearray(bytes(data).replace(tag, other))
    return bytes(data)


def behind_magic(magics: list[bytes]) -> st.SearchStrategy[bytes]:
    """A format's magic bytes followed by noise or by another demuxer's text."""
    tail = st.one_of(st.binary(max_size=512), st.sampled_from(TEXTS))
    return st.builds(lambda m, t: m + t, st.sampled_from(magics), tail)


def image_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=256), behind_magic(IMAGE_MAGIC), mutated(image_seeds))


def video_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=256),
        behind_magic(VIDEO_MAGIC),
        st.builds(lambda t: b"\x1a\x45\xdf\xa3" + t, st.sampled_from(TEXTS)),
        mutated(video_seeds),
    )


def refused_properly(exc: ApiError) -> None:
    if exc.status not in REFUSALS or not exc.message:
        raise Crash(f"refused with {exc.status} {exc.code}: {exc.message!r}")


def check_image(data: bytes) -> str:
    """The image path (``inspect``, then the decode the pipeline does): 'accepted' with pixels
    of the size the header promised, within the limit, or a 4xx."""
    fmt = sniff_format(data)
    try:
        found = inspect(data, MAX_PIXELS)
        image, decoded_fmt = decode_image(data, MAX_PIXELS)
    except ApiError as exc:
        refused_properly(exc)
        return "refused"
    except Exception as exc:
        raise Crash(f"{type(exc).__name__} escaped the image path: {exc}") from exc
    if not (0 < found.width * found.height <= MAX_PIXELS) or decoded_fmt != fmt:
        raise Crash(f"accepted {found.width}x{found.height} {decoded_fmt} (sniffed {fmt})")
    if image.shape != (found.height, found.width, 3) or image.dtype != np.uint8:
        raise Crash(f"the header said {found.width}x{found.height}, decoded {image.shape}")
    return "accepted"


def _udp_sockets() -> set:
    return {s for s in sockets(os.getpid()) if s.kind.startswith("udp") or s.state == "0A"}


def check_video(data: bytes) -> str:
    """The video path (``probe``, then every frame ``decode`` yields): a 4xx, or frames within
    the limits; either way no UDP socket or listener appears in this process."""
    before = _udp_sockets()
    try:
        return _check_video(data)
    finally:
        opened = _udp_sockets() - before
        if opened:
            raise Crash(f"sockets opened: {opened}")


def _check_video(data: bytes) -> str:
    kind = sniff_container(data)
    try:
        info = probe(data, MAX_FRAMES, MAX_SECONDS, MAX_PIXELS)
    except ApiError as exc:
        refused_properly(exc)
        return "refused"
    except Exception as exc:
        raise Crash(f"{type(exc).__name__} escaped probe: {exc}") from exc
    if info.container != kind or not 0 < info.width * info.height <= MAX_PIXELS:
        raise Crash(f"probe accepted {info}")
    if (info.frames or 0) > MAX_FRAMES or (info.seconds or 0) > MAX_SECONDS:
        raise Crash(f"probe accepted {info}")
    return asyncio.run(_frames(data, info))


async def _frames(data: bytes, info) -> str:
    count = 0
    try:
        async for frame in decode_video(data, info):
            count += 1
            if frame.error is not None:
                refused_properly(frame.error)
            elif frame.image is None or frame.image.size > 3 * MAX_PIXELS:
                raise Crash(f"frame {count}: {None if frame.image is None else frame.image.shape}")
            if count > 4 * MAX_FRAMES:
                raise Crash("decode yields more frames than the file holds packets")
    except ApiError as exc:  # a limit reached mid-stream ends it with an error
        refused_properly(exc)
        return "cut"
    except Crash:
        raise
    except Exception as exc:
        raise Crash(f"{type(exc).__name__} escaped decode: {exc}") from exc
    return "accepted"


# --- the multipart and WebSocket parsers, against a live service (they need the whole app) ---

TOKENS = st.text("abcXYZ019'()+_,-./:=? ", min_size=0, max_size=72)
HEADER_TEXT = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=80)
ANSWERED = {200, 400, 408, 413, 415, 422}  # what an upload may be answered with; never a 5xx


@st.composite
def multipart_requests(draw: st.DrawFn) -> tuple[bytes, str]:
    """(body, Content-Type): half well-formed uploads (a ``file`` part holding an image, real
    or mutated, among other parts), half with odd boundaries, headers and endings throughout."""
    odd = draw(st.booleans())
    pick = lambda options: draw(st.sampled_from(options)) if odd else options[0]  # noqa: E731
    boundary = draw(TOKENS) if odd else draw(st.text("abcXYZ019-", min_size=1, max_size=40))
    declared = pick([boundary, f'"{boundary}"', "", boundary + "x", boundary.upper()])
    content_type = pick(
        [
            f"multipart/form-data; boundary={declared}",
            "multipart/form-data",
            f"multipart/form-data; charset=utf-8; boundary={declared}",
            f"multipart/form-data;boundary={declared};boundary=other",
        ]
    )
    newline = pick([b"\r\n", b"\n"])
    parts = []
    if not odd:
        image = draw(st.one_of(st.sampled_from(image_seeds()), mutated(image_seeds)))
        parts.append(b'Content-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + image)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.one_of(st.sampled_from(["file", "image", "x", ""]), TOKENS))
        disposition = draw(
            st.sampled_from(
                [
                    f'form-data; name="{name}"; filename="a.jpg"',
                    f'form-data; name="{name}"',
                    f"form-data; name={name}; filename*=UTF-8''%e2%82%ac.png",
                    "form-data",
                    "",
                ]
            )
        )
        headers = [f"Content-Disposition: {disposition}".encode("latin-1", "replace")]
        if draw(st.booleans()):
            headers.append(b"Content-Type: " + draw(HEADER_TEXT).encode("latin-1"))
        content = draw(
            st.one_of(st.sampled_from(image_seeds()), mutated(image_seeds), st.binary(max_size=128))
        )
        parts.append(newline.join(headers) + newline + newline + content)
    delimiter = b"--" + boundary.encode()
    body = draw(st.binary(max_size=16)) if odd else b""  # a preamble
    for part in parts:
        body += delimiter + newline + part + newline
    body += pick([delimiter + b"--" + newline, delimiter + b"--", b"", delimiter])
    return body, content_type.strip()  # HTTP trims header values; httpx refuses to send it


def check_answer(status: int, body: bytes, allowed: set[int] = ANSWERED) -> None:
    if status not in allowed:
        raise Crash(f"answered {status}: {body[:300]!r}")
    if status != 200:
        try:
            error = json.loads(body)["error"]
            named = bool(error["code"] and error["message"])
        except (ValueError, KeyError, TypeError):
            named = False
        if not named:
            raise Crash(f"{status} without a JSON error naming the problem: {body[:300]!r}")


TEXT_MESSAGES = st.one_of(
    st.builds(
        json.dumps,
        st.dictionaries(
            st.sampled_from(
                ["det_interval", "pose_model", "timestamp", "api_key", "keypoints", "x", ""]
            ),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-(2**70), 2**70),
                st.floats(allow_nan=True, allow_infinity=True),
                st.text(max_size=20),
                st.lists(st.integers(), max_size=3),
            ),
            max_size=4,
        ),
    ),
    st.text(max_size=64),
    st.sampled_from(["{}", "[]", "null", '{"timestamp": 1e400}', '{"timestamp": "NaN"}']),
)
WS_MESSAGES = st.one_of(
    TEXT_MESSAGES,
    st.binary(max_size=128),
    st.sampled_from(image_seeds()),
    mutated(image_seeds),
)


DROPPED = "frames dropped: sent faster than the service answers"


def ws_sessions() -> st.SearchStrategy[list[str | bytes]]:
    """A WebSocket session: the first message (a StreamConfig, or not), then a few more."""
    return st.lists(WS_MESSAGES, min_size=1, max_size=5)


def check_ws(url: str, messages: list[str | bytes], timeout: float = 30) -> str:
    """Sends the messages, then reads until the server closes or has answered every frame:
    every text it sends is a FrameResult or a 4xx error, and it never closes with 1011."""
    frames = sum(isinstance(m, bytes) for m in messages[1:])
    answers = 0
    with connect(url, max_size=None, open_timeout=timeout) as ws:
        try:
            for message in messages:
                ws.send(message)
            while answers < frames:
                reply = json.loads(ws.recv(timeout=timeout))
                error = reply.get("error")
                if set(reply) == {"error"}:  # the last message: the stream was refused
                    if not error["code"] or not error["message"]:
                        raise Crash(f"an error without code or message: {reply}")
                    break
                answers += 1  # frames replaced while waiting (backpressure) are counted too
                for warning in reply.get("warnings") or []:
                    if warning.endswith(DROPPED):
                        answers += int(warning.split(" ", 1)[0])
        except ConnectionClosed:
            pass
        except TimeoutError as exc:
            raise Crash(f"no answer within {timeout} s to {len(messages)} messages") from exc
    code = ws.close_code
    if code == 1011:
        raise Crash(f"closed with 1011 (internal error): {ws.close_reason}")
    return "refused" if code not in (1000, None) else "answered"
