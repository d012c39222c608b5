"""Client side of the gRPC API: frames from a video file or a folder of images -> ``Stream``.

Used by ``rtmserve stream``, the benchmarks and the tests. Video frames are decoded here with
PyAV and sent as raw BGR pixels (exactly what ``POST /v1/pose/video`` decodes on the server),
or re-encoded as JPEG to save bandwidth; image files are sent as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import grpc
import numpy as np

from service.app.schemas import FrameResult
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from service.grpc.messages import to_model

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]


@dataclass(frozen=True)
class SourceFrame:
    image: pb.Image
    timestamp: float | None  # seconds


def raw_image(bgr: np.ndarray) -> pb.Image:
    height, width = bgr.shape[:2]
    raw = pb.RawImage(
        pixels=np.ascontiguousarray(bgr, np.uint8).tobytes(),
        width=width,
        height=height,
        format=pb.PIXEL_FORMAT_BGR,
    )
    return pb.Image(raw=raw)


def jpeg_image(bgr: np.ndarray, quality: int) -> pb.Image:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return pb.Image(encoded=data.tobytes())


def video_frames(path: Path, jpeg_quality: int | None = None) -> Iterator[SourceFrame]:
    """Every frame of a video file with its presentation time."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            bgr = frame.to_ndarray(format="bgr24")
            image = raw_image(bgr) if jpeg_quality is None else jpeg_image(bgr, jpeg_quality)
            yield SourceFrame(image, frame.time)


def directory_frames(path: Path) -> Iterator[SourceFrame]:
    """The folder's image files in name order, sent as they are (no timestamps: fps applies)."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} files in {path}")
    for file in files:
        yield SourceFrame(pb.Image(encoded=file.read_bytes()), None)


def frames_from(path: Path, jpeg_quality: int | None = None) -> Iterator[SourceFrame]:
    return directory_frames(path) if path.is_dir() else video_frames(path, jpeg_quality)


def stream_requests(
    config: pb.StreamConfig, frames: Iterable[SourceFrame]
) -> Iterator[pb.StreamRequest]:
    yield pb.StreamRequest(config=config)
    for f in frames:
        frame = pb.Frame(image=f.image)
        if f.timestamp is not None:
            frame.timestamp = f.timestamp
        yield pb.StreamRequest(frame=frame)


def channel(target: str, root_certificates: bytes | None = None, tls: bool = False) -> grpc.Channel:
    """Plain, or TLS when ``tls`` or ``root_certificates`` (PEM: the CA to trust, e.g. a
    server's self-signed certificate; else the system's) is given."""
    if tls or root_certificates is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates)
        return grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def stream(
    target: str,
    config: pb.StreamConfig,
    frames: Iterable[SourceFrame],
    metadata: tuple[tuple[str, str], ...] = (),
    root_certificates: bytes | None = None,
    tls: bool = False,
) -> Iterator[pb.FrameResult]:
    """One result per frame, in order; raises ``grpc.RpcError`` when the stream fails.
    ``metadata``: e.g. the API key, ``(("x-api-key", KEY),)``; TLS as ``channel``."""
    with channel(target, root_certificates, tls) as ch:
        stub = pb_grpc.PoseServiceStub(ch)
        yield from stub.Stream(stream_requests(config, frames), metadata=metadata)


def frame_result(message: pb.FrameResult) -> FrameResult:
    """The same pydantic model ``POST /v1/pose/video`` answers with, one line each."""
    return to_model(message, FrameResult)
