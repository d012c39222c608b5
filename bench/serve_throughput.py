"""Images/s and p50/p95 latency of POST /v1/pose at 1, 4 and 8 concurrent clients, side by side
with the same pipeline in this process (onnxruntime, same models, images and thread count).

    python bench/serve_throughput.py [--url http://host:8080 --repository DIR]

Without --url it starts ``rtmserve serve`` itself (embedded Triton) from a fresh home with the
local mirror. Prints a table and writes JSON (default bench/results/serve_throughput.json).
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import httpx
import numpy as np
from _report import write_report

from rtmserve.launch import start_service
from service.core.local import LocalPipeline
from service.metadata import read_record

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RTMSERVE_SHARED", ROOT.parent / "shared"))


def run_clients(
    work: Callable[[bytes], None], images: list[bytes], concurrency: int, passes: int
) -> dict:
    """``concurrency`` threads drain a queue of every image ``passes`` times."""
    jobs: queue.Queue[bytes] = queue.Queue()
    for _ in range(passes):
        for data in images:
            jobs.put(data)
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        while True:
            try:
                data = jobs.get_nowait()
            except queue.Empty:
                return
            t = time.perf_counter()
            work(data)
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "images_per_s": round(len(latencies) / wall, 3),
        "p50_ms": round(q[49] * 1e3, 1),
        "p95_ms": round(q[94] * 1e3, 1),
    }


def serving_models(repository: Path, detector: str, pose: str) -> LocalPipeline:
    def onnx(name: str):
        record = read_record(repository / name)
        return repository / name / str(record.serving_version) / "model.onnx", record.parsed_spec

    return LocalPipeline(onnx(detector), onnx(pose), threads=args.threads)


def main() -> None:
    images = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    svc = None
    url, repository = args.url, args.repository
    if url is None:
        home = Path(tempfile.mkdtemp(prefix="rtmserve-bench-"))
        env = {"RTMSERVE_INTRA_OP_THREADS": str(args.threads)}
        svc = start_service(home, SHARED / "models", env)
        url, repository = svc.http, svc.repository
    try:
        local = serving_models(Path(repository), args.detector, args.pose_model)
        http = httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=64))

        def via_service(data: bytes) -> None:
            r = http.post("/v1/pose", content=data)
            r.raise_for_status()

        def in_process(data: bytes) -> None:
            local(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))

        for data in images[:4]:  # warm both paths up
            via_service(data)
            in_process(data)
        rows = []
        for c in args.concurrency:
            service_stats = run_clients(via_service, images, c, args.passes)
            local_stats = run_clients(in_process, images, c, args.passes)
            ratio = {
                k: round(service_stats[k] / local_stats[k], 3)
                for k in ("images_per_s", "p50_ms", "p95_ms")
            }
            rows.append(
                {
                    "concurrency": c,
                    "service": service_stats,
                    "in_process": local_stats,
                    "ratio_service_over_in_process": ratio,
                }
            )
            print(
                f"c={c}: service {service_stats['images_per_s']:.2f} img/s "
                f"p50 {service_stats['p50_ms']:.0f} ms p95 {service_stats['p95_ms']:.0f} ms | "
                f"in-process {local_stats['images_per_s']:.2f} img/s "
                f"p50 {local_stats['p50_ms']:.0f} ms p95 {local_stats['p95_ms']:.0f} ms | "
                f"ratio img/s {ratio['images_per_s']:.2f}",
                flush=True,
            )
    finally:
        if svc is not None:
            svc.stop()
    write_report(
        args.output,
        "serve_throughput",
        images=len(images),
        passes=args.passes,
        threads=args.threads,
        models={"detector": args.detector, "pose": args.pose_model},
        results=rows,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url", help="a running service; default starts one")
    parser.add_argument("--repository", type=Path, help="its runtime repository (with --url)")
    parser.add_argument(
        "--images", type=Path, default=SHARED / "data" / "coco_val_subset" / "images"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="onnxruntime intra-op threads, the same for both sides",
    )
    parser.add_argument("--detector", default="rtmdet-nano")
    parser.add_argument("--pose-model", default="rtmpose-m")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "serve_throughput.json"
    )
    args = parser.parse_args()
    main()
