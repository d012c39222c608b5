"""After ``docker compose up`` on a GPU: does the stack answer correctly, and how fast?

    python deploy/gpu_smoke.py            # on the host, against the published ports

Through ``POST /v1/pose``: an empty picture (0 people), a photo of one person and a mosaic of
the most crowded photos (20 or more; its own photos in deploy/smoke unless ``--images``); a
gRPC stream of 60 frames (one result each, in order); first-request latency, steady p50 and,
with ``--triton-http``, which backend Triton runs each model on. With ``--repository`` (a
readable copy of the runtime repository) every answer is compared with the same models run
here on the CPU by onnxruntime (``service.core.local``, the service's own pre/post-processing);
without it, answers must repeat exactly. Writes the figures as JSON; exits 1 with a one-line
reason when something fails. Runs as well against the CPU service
(``tests/e2e/test_gpu_smoke.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import grpc
import httpx
import numpy as np

from rtmserve.client.grpc import SourceFrame, raw_image, stream
from service.core.local import LocalPipeline
from service.grpc.gen import pose_pb2 as pb
from service.metadata import read_defaults, read_record

BUNDLED_PHOTOS = Path(__file__).resolve().parent / "smoke"  # COCO photos, see SOURCES.md there
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
    """Four tiles (grey where fewer photos are given)."""
    blank = np.full((size, size, 3), 127, np.uint8)
    tiles = [cv2.resize(im, (size, size)) for im in images[:4]]
    tiles += [blank] * (4 - len(tiles))
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])


class SmokeError(Exception):
    """A failure to report in one line (exit 1), not as a traceback."""


def read_photos(folder: Path) -> list[tuple[Path, np.ndarray]]:
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    decoded = [(p, cv2.imread(str(p))) for p in photos]
    decoded = [(p, im) for p, im in decoded if im is not None]
    if len(decoded) < 2:
        raise SmokeError(
            f"{folder} holds {len(decoded)} readable photo(s): give --images a folder with at "
            "least 2 photos of people (one of a single person), or leave it out to use the "
            f"bundled ones ({BUNDLED_PHOTOS})"
        )
    return decoded


def wait_ready(http: httpx.Client, wait_s: float) -> float:
    start = time.monotonic()
    while True:
        try:
            r = http.get("/readyz")
            if r.status_code == 200:
                return time.monotonic() - start
            why = f"/readyz answers {r.status_code}: {r.text[:300]}"
        except httpx.HTTPError as exc:
            why = f"cannot reach {http.base_url} ({exc})"
        if time.monotonic() - start > wait_s:
            raise SmokeError(f"not ready after {wait_s:.0f} s: {why}")
        time.sleep(2)


def keypoints_of(answer: dict) -> np.ndarray:
    return np.array([[[k["x"], k["y"]] for k in p["keypoints"]] for p in answer["persons"]])


def same_answer(a: dict, b: dict) -> bool:
    """The same people, keypoints within PX_TOLERANCE (GPU against GPU: no reference)."""
    ka, kb = keypoints_of(a), keypoints_of(b)
    return ka.shape == kb.shape and (not ka.size or float(np.abs(ka - kb).max()) <= PX_TOLERANCE)


def run(args: argparse.Namespace) -> dict:
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    http = httpx.Client(base_url=args.url, headers=headers, timeout=120)
    report: dict = {"ready_after_s": round(wait_ready(http, args.wait), 1)}
    photos = read_photos(args.images)

    local = None
    if args.repository is not None:  # the same models on this CPU: the reference
        defaults = read_defaults(args.repository)
        local = LocalPipeline(
            serving_onnx(args.repository, defaults["detector"]),
            serving_onnx(args.repository, defaults["pose_model"]),
        )
        count = lambda im: len(local(im).boxes)  # noqa: E731
    else:
        count = lambda im: len(post(http, im)[0]["persons"])  # noqa: E731
    report["reference"] = "CPU onnxruntime" if local else "none (--repository gives one)"
    counted = sorted(((count(im), str(p), im) for p, im in photos), key=lambda t: -t[0])
    singles = [im for n, _, im in counted if n == 1]
    cases = {
        "0 people": np.full((480, 640, 3), 127, np.uint8),
        "1 person": singles[0] if singles else counted[-1][2],
        "crowd": mosaic([im for _, _, im in counted[:4]]),
    }
    failures = []
    first = True
    for name, image in cases.items():
        answer, ms = post(http, image)
        if first:
            report["first_request_ms"], first = round(ms, 1), False
        if local is not None:
            result = agreement(answer, local(image, 0.3, 1000))
            if result["persons"] != result["reference_persons"]:
                failures.append(
                    f"{name}: {result['persons']} persons, CPU {result['reference_persons']}"
                )
            if result["keypoints_within_tolerance"] < 0.95:
                failures.append(
                    f"{name}: keypoints {result['keypoints_within_tolerance']:.1%} within"
                )
        else:
            result = {"persons": len(answer["persons"]),
                      "repeatable": same_answer(answer, post(http, image)[0])}  # fmt: skip
            if not result["repeatable"]:
                failures.append(f"{name}: a second request answered other keypoints")
        report[name] = result
    expected = {"0 people": 0, "1 person": 1}
    for name, n in expected.items():
        if report[name]["persons"] != n:
            failures.append(f"{name}: {report[name]['persons']} persons, expected {n}")
    if report["crowd"]["persons"] < args.crowd_min:
        failures.append(
            f"the crowd mosaic has {report['crowd']['persons']} people, not {args.crowd_min}+"
        )
    steady = [post(http, cases["1 person"])[1] for _ in range(30)]
    report["steady_p50_ms"] = round(statistics.median(steady), 1)

    frames = [SourceFrame(raw_image(cases["1 person"]), i / 30) for i in range(60)]
    metadata = (("x-api-key", args.api_key),) if args.api_key else ()
    got = [m.frame_index for m in stream(args.grpc, pb.StreamConfig(), frames, metadata)]
    report["stream_frames"] = len(got)
    if got != list(range(60)):
        failures.append(f"the stream answered frames {got[:5]}... ({len(got)} of 60)")

    if args.triton_http:
        report["backends"] = backends(args.triton_http, model_names(http))
    report["failures"] = failures
    return report


def model_names(http: httpx.Client) -> list[str]:
    """The default detector and pose model, as the service lists them."""
    listing = http.get("/v1/models").json()
    return [listing["default_detector"], listing["default_pose_model"]]


def backends(triton_http: str, names: list[str]) -> dict:
    out = {}
    for name in names:
        config = httpx.get(f"{triton_http}/v2/models/{name}/config", timeout=10).json()
        accelerators = config.get("optimization", {}).get("execution_accelerators", {})
        tensorrt = config.get("platform") == "tensorrt_plan" or any(
            a.get("name") == "tensorrt" for a in accelerators.get("gpu_execution_accelerator", [])
        )
        out[name] = {"platform": config.get("platform") or config.get("backend"),
                     "tensorrt": tensorrt}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://localhost:8080", help="the gateway's published port")
    p.add_argument("--grpc", default="localhost:50051")
    p.add_argument("--triton-http", default=None, help="Triton's HTTP URL (which backend runs)")
    p.add_argument(
        "--repository",
        type=Path,
        default=None,
        help="the runtime repository (readable here): compare with the CPU",
    )
    p.add_argument("--images", type=Path, default=BUNDLED_PHOTOS, help="photos of people")
    p.add_argument("--crowd-min", type=int, default=20, help="people the crowd mosaic must hold")
    p.add_argument("--api-key", default=None)
    p.add_argument("--wait", type=float, default=900, help="seconds to wait for readiness")
    p.add_argument("--out", type=Path, default=Path("gpu_smoke.json"))
    args = p.parse_args(argv)
    try:
        report = run(args)
    except SmokeError as exc:
        print(f"gpu_smoke: {exc}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, grpc.RpcError, OSError, KeyError, ValueError) as exc:
        print(f"gpu_smoke: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    for failure in report["failures"]:
        print(f"gpu_smoke: FAILED {failure}", file=sys.stderr)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
