"""Helpers shared by the gRPC and video tests: the clip, Triton's statistics, the runtime probe,
and the measurements reported for the clip (track IDs of the two wrestlers, keypoint jitter)."""

from __future__ import annotations

import io
import itertools
from functools import cache
from pathlib import Path

import av
import httpx
import numpy as np

from rtmserve.client.grpc import SourceFrame, video_frames
from rtmserve.launch import ServiceProcess, wait_until
from tests.support.paths import VIDEOS

CLIP = VIDEOS / "arm_wrestling.mp4"  # 280 frames, 28 fps, 340x256: two arm wrestlers


@cache
def clip_frames(path: Path = CLIP) -> tuple[SourceFrame, ...]:
    """Raw BGR frames + presentation times, decoded once (what the server's PyAV decodes)."""
    return tuple(video_frames(path))


def clip_images(n: int) -> list[np.ndarray]:
    """The clip's first frames as BGR arrays."""
    raws = [f.image.raw for f in clip_frames()[:n]]
    return [np.frombuffer(r.pixels, np.uint8).reshape(r.height, r.width, 3) for r in raws]


def write_video(frames: list[np.ndarray], fmt: str, codec: str, rate=28, **options) -> bytes:
    """A real video file of ``frames`` (BGR), encoded with PyAV."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    return buf.getvalue()


def model_stats(service: ServiceProcess, model: str) -> dict:
    r = httpx.get(f"{service.triton_http}/v2/models/{model}/stats", timeout=10)
    r.raise_for_status()
    return r.json()["model_stats"][0]


def executions(service: ServiceProcess, model: str) -> int:
    return int(model_stats(service, model)["execution_count"])


def pending_requests(service: ServiceProcess) -> dict[str, float]:
    """Triton's ``nv_inference_pending_request_count`` per model (requests waiting to run)."""
    text = httpx.get(f"{service.triton_metrics}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("nv_inference_pending_request_count{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('model="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def runtime(service: ServiceProcess) -> dict:
    return httpx.get(f"{service.http}/debug/runtime", timeout=10).json()


def wait_released(service: ServiceProcess, baseline: dict, what: str) -> None:
    """Until no stream runs and tasks and threads are back to ``baseline`` (a runtime())."""

    def released() -> bool:
        now = runtime(service)
        return (
            now["streams"] == 0
            and now["tasks"] <= baseline["tasks"]
            and now["threads"] <= baseline["threads"]
        )

    wait_until(released, 60, f"the server to release {what} (baseline {baseline})")


def wrestler(bbox: list[float]) -> str | None:
    """Which wrestler a detector box is: both fill the frame's height, left or right half.
    Small boxes (spectators) and boxes spanning both (the detector merging them) are neither."""
    x1, y1, x2, y2 = bbox
    if y2 - y1 < 180 or x2 - x1 > 250:
        return None
    return "left" if (x1 + x2) / 2 < 170 else "right"


def id_report(results: list[dict]) -> dict:
    """Distinct track IDs, and per wrestler the IDs it had at its detections and how often the
    ID changed between consecutive detections (an ID switch)."""
    seen: dict[str, list[int]] = {"left": [], "right": []}
    for r in results:
        for p in r["persons"]:
            side = wrestler(p["bbox"]) if p["detected"] else None
            if side:
                seen[side].append(p["track_id"])
    report: dict = {"distinct_ids": len({p["track_id"] for r in results for p in r["persons"]})}
    for side, ids in seen.items():
        switches = sum(a != b for a, b in itertools.pairwise(ids))
        report[side] = {"detections": len(ids), "ids": sorted(set(ids)), "switches": switches}
    return report


def mean_displacement(results: list[dict]) -> float:
    """Mean over consecutive frames and tracks of the mean keypoint displacement (pixels)."""
    steps = []
    for a, b in itertools.pairwise(results):
        before = {p["track_id"]: p for p in a["persons"]}
        for p in b["persons"]:
            q = before.get(p["track_id"])
            if q is not None:
                xy0 = np.array([[k["x"], k["y"]] for k in q["keypoints"]])
                xy1 = np.array([[k["x"], k["y"]] for k in p["keypoints"]])
                steps.append(np.linalg.norm(xy1 - xy0, axis=1).mean())
    return float(np.mean(steps))
