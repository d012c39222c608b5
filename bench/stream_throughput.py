"""Video stream throughput over gRPC: frames/s for 1 and 4 concurrent streams, with the detector
on every frame (interval 1) and on every 5th (interval 5, the seeds' setting).

    python bench/stream_throughput.py [--server HOST:PORT --triton-http URL] [--frames N]

Without --server it starts ``rtmserve serve`` itself (embedded Triton) from a fresh home with
the local mirror. Every stream sends the same clip (decoded once beforehand, sent as raw BGR, so
client-side decoding is not measured) and reads one result per frame. Prints a table and writes
JSON (default bench/results/stream_throughput.json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _report import write_report
from _threads import run_together

from rtmserve.client.grpc import SourceFrame, stream, video_frames
from rtmserve.launch import start_service
from service.grpc.gen import pose_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RTMSERVE_SHARED", ROOT.parent / "shared"))


def run_streams(
    target: str, frames: list[SourceFrame], streams: int, config: pb.StreamConfig
) -> dict:
    """``streams`` clients stream the clip at once; per stream: frames/s and gaps between
    results (the per-frame latency a live client sees)."""
    per_stream: list[dict] = [{} for _ in range(streams)]
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            start = last = time.perf_counter()
            gaps = []
            count = detections = 0
            for result in stream(target, config, frames):
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
                count += 1
                detections += result.timings.stages_ms.get("detector", 0.0) > 0
            per_stream[i] = {
                "frames": count,
                "seconds": last - start,
                "gaps": gaps,
                "detections": detections,
            }
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)

    wall = run_together([lambda i=i: client(i) for i in range(streams)])
    if errors:
        raise errors[0]
    total = sum(s["frames"] for s in per_stream)
    gaps = [g for s in per_stream for g in s["gaps"][1:]]
    q = statistics.quantiles(gaps, n=100, method="inclusive")
    return {
        "frames": total,
        "seconds": round(wall, 2),
        "frames_per_s": round(total / wall, 2),
        "per_stream_frames_per_s": round(
            statistics.mean(s["frames"] / s["seconds"] for s in per_stream), 2
        ),
        "result_gap_p50_ms": round(q[49] * 1e3, 1),
        "result_gap_p95_ms": round(q[94] * 1e3, 1),
        # frames whose detector stage took time, as the pipeline timed it
        "detector_runs": sum(s["detections"] for s in per_stream),
    }


def main() -> None:
    frames = list(video_frames(args.video))[: args.frames]
    svc = None
    target = args.server
    if target is None:
        home = Path(tempfile.mkdtemp(prefix="rtmserve-bench-"))
        svc = start_service(home, SHARED / "models")
        target = f"127.0.0.1:{svc.grpc_port}"
    rows = []
    try:
        list(stream(target, pb.StreamConfig(), frames[:10]))  # warm up
        for interval in args.det_intervals:
            for streams in args.streams:
                config = pb.StreamConfig(det_interval=interval)
                row = {"det_interval": interval, "streams": streams}
                row.update(run_streams(target, frames, streams, config))
                rows.append(row)
                print(
                    f"det_interval {interval}, {streams} stream(s): {row['frames_per_s']:.2f} "
                    f"frames/s in all, {row['per_stream_frames_per_s']:.2f} per stream, result "
                    f"gap p50 {row['result_gap_p50_ms']:.0f} ms p95 "
                    f"{row['result_gap_p95_ms']:.0f} ms, detector ran "
                    f"{row['detector_runs']} times",
                    flush=True,
                )
    finally:
        if svc is not None:
            svc.stop()
    write_report(
        args.output,
        "stream_throughput",
        video=str(args.video),
        frames_per_stream=len(frames),
        results=rows,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--server", help="gRPC host:port of a running service; default starts one")
    parser.add_argument(
        "--video", type=Path, default=SHARED / "data" / "videos" / "arm_wrestling.mp4"
    )
    parser.add_argument("--frames", type=int, default=None, help="first N frames (default: all)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--det-intervals", type=int, nargs="+", default=[1, 5])
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "stream_throughput.json"
    )
    args = parser.parse_args()
    main()
