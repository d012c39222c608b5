"""rtmserve against what a user would run instead, side by side in one run, on the same ONNX files,
images and cores: images/s and p50/p95 latency, and video frames/s.

    pip install rtmlib==0.0.16 --no-deps matplotlib     # the peers' extras (see docs/peers)
    python bench/peers.py [--models t m shipped] [--concurrency 1 4 8 16] [--threads 8]
                          [--rounds 3] [--video]

Runners, per pose model (RTMPose-t and -m exports with seeded weights: real compute; the model
shipped in models/), all with the real RTMDet-nano detector from ../shared/models:

- ``rtmserve``: ``POST /v1/pose`` from 1, 4, 8 and 16 closed-loop clients (the service started
  here, embedded Triton, its defaults);
- ``in-process``: rtmserve's own pipeline in one process with onnxruntime (``service.core.local``);
- ``rtmlib``: rtmlib 0.0.16 ``RTMDet`` + ``RTMPose``, sequential and one instance called from N
  threads (its best configuration);
- ``sdk``: the MMDeploy SDK 1.3.1 ``Detector`` + ``PoseDetector``, sequential and N threads.

Every runner but rtmserve runs in a process of its own (the SDK may abort instead of raising).
The runners take turns, ``--rounds`` times; the figures are each one's median (the machine is
noisy: only figures measured side by side compare).
Video (``--video``): one gRPC stream of the arm-wrestling clip against MMDeploy's
``PoseTracker`` on the same models, at det_interval 1 and 5. Prints a table, writes JSON
(bench/results/peers.json) and a plot of images/s and p95 against concurrency
(bench/results/peers.png).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _report import write_report
from _threads import run_together

from rtmserve.client import Client, RetryPolicy
from training.sdk_metadata import sdk_pose_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RTMSERVE_SHARED", ROOT.parent / "shared")).resolve()
DETECTOR_DIR = SHARED / "models" / "rtmdet-nano_person_320x320_ort-end2end"
POSE_SDK_METADATA = SHARED / "models" / "rtmpose-m_aic-coco_256x192_sdk-metadata-only"
IMAGES = SHARED / "data" / "coco_val_subset" / "images"
CLIP = SHARED / "data" / "videos" / "arm_wrestling.mp4"
SHIPPED = ROOT / "models" / "rtmserve-pose-n"
WARM_UP = 30  # images each peer runs before it is timed (rtmserve: one pass of all, once)


def closed_loop(work: Callable[[bytes], None], images: list[bytes], clients: int) -> dict:
    """``clients`` threads drain a queue of the images; latency of each call."""
    jobs: queue.Queue[bytes] = queue.Queue()
    for data in images:
        jobs.put(data)
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        while not errors:
            try:
                data = jobs.get_nowait()
            except queue.Empty:
                return
            t = time.perf_counter()
            try:
                work(data)
            except BaseException as exc:  # raised below: a failed run has no figures
                errors.append(exc)
                return
            with lock:
                latencies.append(time.perf_counter() - t)

    wall = run_together([client] * clients)
    if errors:
        raise errors[0]
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "images_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(q[49] * 1e3, 1),
        "p95_ms": round(q[94] * 1e3, 1),
    }


# --------------------------------------------------------------------------- peers (own process)


def run_peer(runner: str, pose: dict, threads: int, images: list[bytes]) -> dict:
    """One peer configuration in this process: {images_per_s, p50_ms, p95_ms}."""
    import cv2
    import numpy as np

    decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # noqa: E731
    if runner == "in-process":
        from service.core.local import LocalPipeline
        from service.core.specs import DetectorSpec, PoseSpec

        spec = PoseSpec(input_size=tuple(pose["input_size"]), crop=pose["crop"])
        local = LocalPipeline((DETECTOR_DIR / "end2end.onnx", DetectorSpec()), (pose["onnx"], spec))
        work = lambda data: local(decode(data))  # noqa: E731
    elif runner == "rtmlib":
        from rtmlib import RTMDet, RTMPose

        det = RTMDet(onnx_model=str(DETECTOR_DIR / "end2end.onnx"), model_input_size=(320, 320),
                     backend="onnxruntime", device="cpu")  # fmt: skip
        est = RTMPose(onnx_model=str(pose["onnx"]), model_input_size=tuple(pose["input_size"]),
                      backend="onnxruntime", device="cpu")  # fmt: skip

        def work(data: bytes) -> None:
            image = decode(data)
            est(image, bboxes=det(image))
    elif runner == "sdk":
        from mmdeploy_runtime import Detector, PoseDetector

        det = Detector(model_path=str(DETECTOR_DIR), device_name="cpu", device_id=0)
        est = PoseDetector(model_path=pose["sdk_dir"], device_name="cpu", device_id=0)

        def work(data: bytes) -> None:
            image = decode(data)
            found, _, _ = det(image)
            boxes = found[found[:, 4] > 0.3, :4] if len(found) else found[:, :4]
            if len(boxes):
                est(image, boxes)
    else:
        raise ValueError(runner)
    for data in images[:WARM_UP]:
        work(data)  # warm up: onnxruntime's first run of each input shape is slow
    return closed_loop(work, images, threads)


def run_tracker(pose: dict, det_interval: int) -> dict:
    """MMDeploy's PoseTracker over the clip: frames/s."""
    import av
    from mmdeploy_runtime import PoseTracker

    with av.open(str(CLIP)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    tracker = PoseTracker(det_model=str(DETECTOR_DIR), pose_model=pose["sdk_dir"],
                          device_name="cpu")  # fmt: skip
    state = tracker.create_state(det_interval=det_interval, det_min_bbox_size=10)
    start = time.perf_counter()
    for frame in frames:
        tracker(state, frame, detect=-1)
    return {"frames_per_s": round(len(frames) / (time.perf_counter() - start), 2)}


def peer_process(runner: str, pose: dict, threads: int, images_dir: Path, limit: int) -> dict:
    job = {"runner": runner, "pose": pose, "threads": threads, "images": str(images_dir),
           "limit": limit}  # fmt: skip
    run = subprocess.run(
        [sys.executable, __file__, "--peer", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if run.returncode != 0:
        return {"error": (run.stderr or run.stdout)[-500:]}
    return json.loads(run.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- set-up


def export(variant: str, out: Path) -> None:
    cmd = [sys.executable, "-m", "training.export", "--variant", variant, "--seed", "0",
           "--output", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=1800)


def prepare_models(work: Path, wanted: list[str]) -> dict[str, dict]:
    models = {}
    card = json.loads((SHIPPED / "card.json").read_text())
    for key in wanted:
        if key == "shipped":
            onnx, size, crop, name = SHIPPED / card["file"], tuple(card["input_size"]), card.get(
                "crop", "sdk"), card["name"]  # fmt: skip
        else:
            onnx, size, crop, name = work / f"rtmpose-{key}.onnx", (192, 256), "sdk", (
                f"bench-rtmpose-{key}")  # fmt: skip
            export(key, onnx)
        sdk = sdk_pose_dir(POSE_SDK_METADATA, onnx, size, work / f"sdk-{key}")
        models[key] = {"name": name, "onnx": str(onnx), "input_size": list(size), "crop": crop,
                       "sdk_dir": str(sdk)}  # fmt: skip
    return models


def register(svc, name: str, onnx: str, like: str) -> None:
    from rtmserve.launch import RTMSERVE

    cmd = [RTMSERVE, "models", "register", name, onnx, "--like", like, "--home", str(svc.home),
           "--triton-http", svc.triton_http]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)


def stream_fps(svc, pose: str, det_interval: int) -> dict:
    from rtmserve.client.grpc import stream, video_frames
    from service.grpc.gen import pose_pb2 as pb

    frames = list(video_frames(CLIP))
    config = pb.StreamConfig(det_interval=det_interval, pose_model=pose)
    start = time.perf_counter()
    results = list(stream(f"127.0.0.1:{svc.grpc_port}", config, frames))
    return {"frames_per_s": round(len(results) / (time.perf_counter() - start), 2)}


# --------------------------------------------------------------------------- report


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(2, len(keys), figsize=(5 * len(keys), 8), squeeze=False)
    for col, key in enumerate(keys):
        for runner in sorted({r["runner"] for r in rows}):
            pts = sorted((r["clients"], r) for r in rows if r["model"] == key and r["runner"]
                         == runner and "images_per_s" in r)  # fmt: skip
            if not pts:
                continue
            x = [c for c, _ in pts]
            axes[0][col].plot(x, [r["images_per_s"] for _, r in pts], "o-", label=runner)
            axes[1][col].plot(x, [r["p95_ms"] for _, r in pts], "o-", label=runner)
        axes[0][col].set_title(f"{key}: images/s")
        axes[1][col].set_title(f"{key}: p95 latency (ms)")
        for ax in axes[:, col]:
            ax.set_xlabel("concurrent clients / threads")
            ax.set_xscale("log", base=2)
            ax.grid(True, alpha=0.3)
        axes[0][col].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def measure_round(
    svc, client: Client, models: dict, images: list[bytes], args, first: bool
) -> tuple:
    """Every runner once, one after the other: (rows, video rows)."""
    rows, video = [], []
    for key, pose in models.items():

        def via_service(data: bytes, name: str = pose["name"]) -> None:
            """rtmserve's client: a 503 (the admission limit) is retried after the Retry-After
            it names; the latency counts from the first attempt."""
            client.estimate(data, pose_model=name)

        if first:  # every pipeline instance meets the batch shapes once
            closed_loop(via_service, images, 8)
        for clients in args.concurrency:
            before = client.retries
            result = closed_loop(via_service, images, clients)
            rows.append({"model": key, "runner": "rtmserve", "clients": clients, **result,
                         "retried_503": client.retries - before})  # fmt: skip
            print(rows[-1], flush=True)
        for runner, threads in (("in-process", 1), ("rtmlib", 1), ("rtmlib", args.threads),
                                ("sdk", 1), ("sdk", args.threads)):  # fmt: skip
            result = peer_process(runner, pose, threads, args.images, args.limit)
            rows.append({"model": key, "runner": runner, "clients": threads, **result})
            print(rows[-1], flush=True)
        if args.video and key == "m":
            for interval in (1, 5):
                ours = stream_fps(svc, pose["name"], interval)
                job = {"runner": "tracker", "pose": pose, "det_interval": interval}
                run = subprocess.run([sys.executable, __file__, "--peer", json.dumps(job)],
                                     capture_output=True, text=True, timeout=3600)  # fmt: skip
                theirs = json.loads(run.stdout.strip().splitlines()[-1])
                video.append({"det_interval": interval,
                              "rtmserve_grpc_fps": ours["frames_per_s"],
                              "pose_tracker_fps": theirs["frames_per_s"]})  # fmt: skip
                print(video[-1], flush=True)
    return rows, video


def medians(rows: list[dict], keys: tuple[str, ...], fields: tuple[str, ...]) -> list[dict]:
    """One row per ``keys`` group: the median of each field over the rounds, and the rounds'."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for group, members in groups.items():
        row = dict(zip(keys, group, strict=True))
        ok = [m for m in members if fields[0] in m]
        if not ok:
            row["error"] = members[0].get("error")
        for f in fields:
            values = [m[f] for m in ok if f in m]
            if values:
                row[f] = round(statistics.median(values), 2)
                row[f"{f}_rounds"] = values
        out.append(row)
    return out


def summarise(rows: list[dict], video: list[dict], models: dict) -> dict:
    find = lambda key, runner, clients: next(  # noqa: E731
        (r for r in rows if (r["model"], r["runner"], r["clients"]) == (key, runner, clients)
         and "images_per_s" in r), None)  # fmt: skip
    summary: dict = {}
    for key in models:
        ours, one, local = find(key, "rtmserve", 8), find(key, "rtmserve", 1), find(
            key, "in-process", 1)  # fmt: skip
        peers = [r for r in rows if r["model"] == key and r["runner"] in ("rtmlib", "sdk")
                 and "images_per_s" in r]  # fmt: skip
        best = max(peers, key=lambda r: r["images_per_s"], default=None)
        if ours and best and one and local:
            summary[key] = {
                "rtmserve_8_over_best_peer": round(ours["images_per_s"] / best["images_per_s"], 2),
                "best_peer": f"{best['runner']} x{best['clients']}",
                "p50_1_client_over_in_process": round(one["p50_ms"] / local["p50_ms"], 2),
                "rtmserve_8_over_in_process": round(
                    ours["images_per_s"] / local["images_per_s"], 2
                ),
            }
    for v in video:
        v["ratio"] = round(v["rtmserve_grpc_fps"] / v["pose_tracker_fps"], 2)
    return summary


def main(args: argparse.Namespace) -> None:
    from rtmserve.launch import start_service

    images_paths = sorted(args.images.glob("*.jpg"))[: args.limit]
    images = [p.read_bytes() for p in images_paths]
    work = Path(tempfile.mkdtemp(prefix="rtmserve-peers-"))
    models = prepare_models(work, args.models)
    svc = start_service(work / "home", SHARED / "models")
    all_rows, all_video = [], []
    try:
        for key, pose in models.items():
            if key != "shipped":
                register(svc, pose["name"], pose["onnx"], f"rtmpose-{key}")
        patient = RetryPolicy(attempts=10_000, cap=5.0, deadline=600)
        client = Client(svc.http, retry=patient, timeout=600)
        for n in range(args.rounds):  # interleaved: the machine's drift hits every runner alike
            print(f"-- round {n + 1} of {args.rounds}", flush=True)
            rows, video = measure_round(svc, client, models, images, args, first=n == 0)
            all_rows += rows
            all_video += video
    finally:
        svc.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = medians(
        all_rows,
        ("model", "runner", "clients"),
        ("images_per_s", "p50_ms", "p95_ms", "retried_503"),
    )
    video = medians(all_video, ("det_interval",), ("rtmserve_grpc_fps", "pose_tracker_fps"))
    summary = summarise(rows, video, models)
    print(f"\nmedians of {args.rounds} interleaved rounds, {len(images)} images each")
    print(f"{'model':8} {'runner':11} {'clients':>7} {'img/s':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for r in rows:
        if "images_per_s" in r:
            print(f"{r['model']:8} {r['runner']:11} {r['clients']:>7} {r['images_per_s']:>7.2f} "
                  f"{r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f}")  # fmt: skip
        else:
            print(f"{r['model']:8} {r['runner']:11} {r['clients']:>7} failed: {r.get('error')}")
    print(json.dumps({"summary": summary, "video": video}, indent=2))
    plot(rows, args.plot)
    write_report(args.output, "peers", images=len(images), threads=args.threads,
                 rounds=args.rounds, rows=rows, summary=summary, video=video)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["t", "m", "shipped"],
                        choices=["t", "m", "shipped"])  # fmt: skip
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--threads", type=int, default=8, help="the peers' threaded configuration")
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--limit", type=int, default=110, help="images per run")
    parser.add_argument("--video", action="store_true", help="also the video comparison (m)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "peers.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "results" / "peers.png")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: one peer run, as JSON
    args = parser.parse_args()
    if args.peer:
        job = json.loads(args.peer)
        if job["runner"] == "tracker":
            print(json.dumps(run_tracker(job["pose"], job["det_interval"])))
        else:
            folder = Path(job["images"])
            data = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[: job["limit"]]]
            print(json.dumps(run_peer(job["runner"], job["pose"], job["threads"], data)))
    else:
        main(args)
