"""After ``docker compose up`` on a GPU: does the stack answer correctly, and how fast?

    docker compose exec gateway python /opt/rtmserve/deploy/gpu_smoke.py \\
        --images /path/to/photos --repository /var/lib/rtmserve/repository

Through ``POST /v1/pose``: an empty picture (0 people), a photo of one person and a mosaic of
the most crowded photos (20 or more), each compared with the same models run here on the CPU
by onnxruntime (``service.core.local``, the service's own pre/post-processing); a gRPC stream
of 60 frames (one result each, in order); first-request latency, steady p50, and which
backend Triton runs each model on (TensorRT or not). Writes the figures as JSON; exits 1 when
something fails. Runs as well against the CPU service (``tests/e2e/test_gpu_smoke.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

from rtmserve.client.grpc import SourceFrame, raw_image, stream
from service.core.local import LocalPipeline
from service.grpc.gen import pose_pb2 as pb
from service.metadata import read_defaults, read_record

PX_TOLERANCE = 2.0  # TensorRT FP16 moves keypoints by a fraction of a pixel; 2 px is a mistake


def post(http: httpx.Client, image: np.ndarray) -> tuple[dict, float]:
    data = cv2.imencode(".png", image)[1].tobytes()  # lossless: both sides see the same pixels
    start = time.perf_counter()
    r = http.post("/v1/pose", content=data, params={"max_persons": 1000})
    r.raise_for_status()
    return r.json(), (time.perf_counter() - start) * 1e3


def serving_onnx(repository: Path, name: str) -> tuple[Path, object]:
    record = read_record(repository / name)
    return repository / name / str(record.serving_version) / "model.onnx", record.parsed_spec


def agreement(answer: dict, reference) -> dict:
    """Served vs CPU reference: people matched by box, keypoints within PX_TOLERANCE."""
    served = np.array([p["bbox"] for p in answer["persons"]]).reshape(-1, 4)
    kpts = [[[k["x"], k["y"]] for k in p["keypoints"]] for p in answer["persons"]]
    dist = []
    for i, box in enumerate(reference.boxes[:, :4]):
        if not len(served):
            break
        j = int(np.abs(served - box).max(axis=1).argmin())
        dist.append(np.linalg.norm(np.array(kpts[j]) - reference.keypoints[i][:, :2], axis=1))
    dist_all = np.concatenate(dist) if dist else np.zeros(0)
    return {
        "persons": len(served),
        "reference_persons": len(reference.boxes),
        "keypoints_within_tolerance": float((dist_all <= PX_TOLERANCE).mean()) if dist else 1.0,
        "mean_px": float(dist_all.mean()) if dist else 0.0,
    }


def mosaic(images: list[np.ndarray], size: int = 640) -> np.ndarray:
    tiles = [cv2.resize(im, (size, size)) for im in images[:4]]
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://localhost:8080")
    p.add_argument("--grpc", default="localhost:50051")
    p.add_argument("--triton-http", default=None, help="Triton's HTTP URL (which backend runs)")
    p.add_argument("--repository", type=Path, required=True, help="the runtime repository")
    p.add_argument("--images", type=Path, required=True, help="a folder of photos with people")
    p.add_argument("--api-key", default=None)
    p.add_argument("--wait", type=float, default=900, help="seconds to wait for readiness")
    p.add_argument("--out", type=Path, default=Path("gpu_smoke.json"))
    args = p.parse_args(argv)

    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    http = httpx.Client(base_url=args.url, headers=headers, timeout=120)
    start = time.monotonic()
    while http.get("/readyz").status_code != 200:
        if time.monotonic() - start > args.wait:
            print(f"not ready after {args.wait:.0f} s: {http.get('/readyz').text}")
            return 1
        time.sleep(2)
    report: dict = {"ready_after_s": round(time.monotonic() - start, 1)}

    defaults = read_defaults(args.repository)
    local = LocalPipeline(
        serving_onnx(args.repository, defaults["detector"]),
        serving_onnx(args.repository, defaults["pose_model"]),
    )
    photos = sorted(args.images.rglob("*.jpg"))
    counted = sorted(((len(local(cv2.imread(str(f))).boxes), f) for f in photos), reverse=True)
    one = next((f for n, f in counted if n == 1), counted[-1][1])
    cases = {
        "0 people": np.full((480, 640, 3), 127, np.uint8),
        "1 person": cv2.imread(str(one)),
        "crowd": mosaic([cv2.imread(str(f)) for _, f in counted[:4]]),
    }
    failures = []
    first = True
    for name, image in cases.items():
        answer, ms = post(http, image)
        if first:
            report["first_request_ms"], first = round(ms, 1), False
        result = agreement(answer, local(image, 0.3, 1000))
        report[name] = result
        if result["persons"] != result["reference_persons"]:
            failures.append(
                f"{name}: {result['persons']} persons, CPU {result['reference_persons']}"
            )
        if result["keypoints_within_tolerance"] < 0.95:
            failures.append(f"{name}: keypoints {result['keypoints_within_tolerance']:.1%} within")
    if report["crowd"]["persons"] < 20:
        failures.append(f"the crowd mosaic has {report['crowd']['persons']} people, not 20+")
    steady = [post(http, cases["1 person"])[1] for _ in range(30)]
    report["steady_p50_ms"] = round(statistics.median(steady), 1)

    frames = [SourceFrame(raw_image(cases["1 person"]), i / 30) for i in range(60)]
    metadata = (("x-api-key", args.api_key),) if args.api_key else ()
    got = [m.frame_index for m in stream(args.grpc, pb.StreamConfig(), frames, metadata)]
    report["stream_frames"] = len(got)
    if got != list(range(60)):
        failures.append(f"the stream answered frames {got[:5]}... ({len(got)} of 60)")

    if args.triton_http:
        backends = {}
        for name in (defaults["detector"], defaults["pose_model"]):
            config = httpx.get(f"{args.triton_http}/v2/models/{name}/config", timeout=10).json()
            accelerators = config.get("optimization", {}).get("execution_accelerators", {})
            tensorrt = config.get("platform") == "tensorrt_plan" or any(
                a.get("name") == "tensorrt"
                for a in accelerators.get("gpu_execution_accelerator", [])
            )
            backends[name] = {"platform": config.get("platform") or config.get("backend"),
                              "tensorrt": tensorrt}  # fmt: skip
        report["backends"] = backends
    report["failures"] = failures
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
