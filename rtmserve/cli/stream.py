"""``rtmserve stream``: send a video file or a folder of frames to a server, print the results.

Heavy imports (gRPC, PyAV) wait for the command to run, so ``rtmserve --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.app.schemas import FrameResult


def add_stream_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stream",
        help="stream a video (or a folder of frames) to a server over gRPC",
        description="Stream a video file or a folder of images to a running rtmserve over gRPC; "
        "print one line per frame and the frames/s achieved.",
    )
    p.add_argument("source", type=Path, help="video file (mp4, webm, mkv, avi) or image folder")
    p.add_argument("--server", default="localhost:50051", help="gRPC host:port (localhost:50051)")
    p.add_argument("--ndjson", type=Path, help="also write every result as a JSON line here")
    p.add_argument("--det-interval", type=int, help="run the detector every N frames")
    p.add_argument("--no-smoothing", action="store_true", help="raw keypoints (no One-Euro)")
    p.add_argument("--score-threshold", type=float, help="detector score threshold (0.5)")
    p.add_argument("--pose-model", help="pose model name (server default)")
    p.add_argument("--fps", type=float, help="frame rate of a folder of frames (30)")
    p.add_argument(
        "--jpeg", type=int, metavar="QUALITY", help="send video frames as JPEG (default: raw)"
    )
    p.add_argument(
        "--quiet", action="store_true", help="progress and the summary only, no line per frame"
    )
    p.set_defaults(func=run_stream_command)


def run_stream_command(args: argparse.Namespace) -> int:
    import grpc

    from rtmserve.client.grpc import frame_result, frames_from, stream
    from service.grpc.gen import pose_pb2 as pb
    from service.progress import progress

    if not args.source.exists():
        print(f"error: {args.source} does not exist", file=sys.stderr)
        return 2
    config = pb.StreamConfig(smoothing=not args.no_smoothing)
    for field, value in (
        ("det_interval", args.det_interval),
        ("score_threshold", args.score_threshold),
        ("pose_model", args.pose_model),
        ("fps", args.fps),
    ):
        if value is not None:
            setattr(config, field, value)
    out = args.ndjson.open("w") if args.ndjson else None
    frames = errors = 0
    start = time.perf_counter()
    try:
        with progress(_frame_count(args.source), "stream", "frames") as bar:
            for message in stream(args.server, config, frames_from(args.source, args.jpeg)):
                result = frame_result(message)
                frames += 1
                errors += result.error is not None
                if out:
                    out.write(result.model_dump_json() + "\n")
                if args.quiet:
                    bar.update(1)
                else:
                    print(_line(result), flush=True)
    except grpc.RpcError as exc:
        status = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
        print(f"error: {status}", file=sys.stderr)
        return 1
    finally:
        if out:
            out.close()
    seconds = time.perf_counter() - start
    rate = frames / seconds if seconds > 0 else 0.0
    print(f"{frames} frames in {seconds:.2f} s: {rate:.2f} frames/s ({errors} frame errors)")
    return 0


def _frame_count(source: Path) -> int | None:
    """The video's declared frame count (or the folder's images), for the progress bar's ETA."""
    import av

    from rtmserve.client.grpc import IMAGE_SUFFIXES

    if source.is_dir():
        return sum(1 for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    with av.open(str(source)) as container:
        return container.streams.video[0].frames or None


def _line(result: FrameResult) -> str:
    head = f"frame {result.frame_index:5d}  t={result.timestamp:8.3f}s"
    if result.error is not None:
        return f"{head}  error: {result.error.message}"
    ids = [p.track_id for p in result.persons]
    tag = "det" if result.detected else "   "
    return f"{head}  {tag}  {len(ids)} persons  ids {ids}  {result.timings.total_ms:.1f} ms"
