"""gRPC ``Stream`` and ``POST /v1/pose/video`` on a real clip, against the real service.

The served RTMPose-m is UNTRAINED (seeded random weights), so its keypoints are noise and boxes
derived from them drift between detections. These tests therefore assert the mechanics (one
result per frame in order, the detector on every 5th frame only, poses on every frame, the same
answer over gRPC and HTTP, smoothing, errors, cancellation, limits) and print the tracking
figures instead of asserting on them; tracking quality is tested on synthetic people with true
keypoints in test_tracking.py.
"""

from __future__ import annotations

import itertools
import json
import math

import grpc
import httpx
import numpy as np
import pytest

from rtmserve.client.grpc import (
    SourceFrame,
    channel,
    frame_result,
    raw_image,
    stream,
    stream_requests,
)
from rtmserve.launch import wait_until
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from tests.support.streaming import (
    CLIP,
    clip_frames,
    executions,
    id_report,
    mean_displacement,
    model_stats,
    pending_requests,
    runtime,
    wait_released,
)


def requests(service, model: str) -> int:
    return int(model_stats(service, model)["inference_stats"]["success"]["count"])


PIPELINE = "pose_pipeline"
# PoseTracker's defaults with the detector every 5th frame. One exception: the untrained model's
# keypoint scores sit around 0.5 (0.35..0.99), so with the 0.5 visibility threshold PoseTracker's
# validity rule (half the keypoints visible) would drop poses at random; 0.3 takes every pose.
CLIP_OPTIONS = {"det_interval": 5, "pose_kpt_thr": 0.3}


def run_grpc(service, frames, **options) -> list[dict]:
    config = pb.StreamConfig(**options)
    target = f"127.0.0.1:{service.grpc_port}"
    return [frame_result(m).model_dump() for m in stream(target, config, frames)]


@pytest.fixture(scope="module")
def clip_runs(service):
    """The clip over gRPC with and without smoothing, and the detector runs of the first: the
    frames whose detector stage took time (the pipeline times the detector call itself; the
    CPU server runs the detector inside the pipeline, so Triton has no count of its own)."""
    frames = clip_frames()
    before = requests(service, PIPELINE)
    smoothed = run_grpc(service, frames, **CLIP_OPTIONS)
    detector_runs = sum(r["timings"]["stages_ms"]["detector"] > 0 for r in smoothed)
    pipeline_calls = requests(service, PIPELINE) - before
    raw = run_grpc(service, frames, smoothing=False, **CLIP_OPTIONS)
    return {
        "smoothed": smoothed,
        "raw": raw,
        "detector_runs": detector_runs,
        "pipeline_calls": pipeline_calls,
    }


def test_clip_gets_one_result_per_frame_and_the_detector_runs_every_5th(clip_runs, capsys):
    frames, results = clip_frames(), clip_runs["smoothed"]
    assert len(frames) == 280
    assert [r["frame_index"] for r in results] == list(range(280))
    assert [r["timestamp"] for r in results] == pytest.approx([f.timestamp for f in frames])
    assert clip_runs["detector_runs"] == math.ceil(280 / 5) == 56
    # one pipeline call per frame at most: a detection frame also estimates the tracks the
    # detector missed in the same call (every frame here has someone to follow)
    assert clip_runs["pipeline_calls"] == 280
    assert [r["detected"] for r in results] == [i % 5 == 0 for i in range(280)]
    for r in results:
        assert r["error"] is None and r["image"] == {"width": 340, "height": 256, "format": "bgr"}
        assert r["persons"], f"frame {r['frame_index']} has no person"
        ids = [p["track_id"] for p in r["persons"]]
        assert len(set(ids)) == len(ids) and all(i >= 1 for i in ids)
        for p in r["persons"]:
            assert len(p["keypoints"]) == 17 and p["detected"] <= r["detected"]
    report = id_report(results)
    with capsys.disabled():
        print(f"\ntrack IDs on the clip (det_interval 5, untrained pose model): {report}")


def test_ids_are_never_reused_after_a_track_ends(clip_runs):
    """A track's frames form one run with gaps of at most track_max_missing (10) frames."""
    frames_of: dict[int, list[int]] = {}
    for r in clip_runs["smoothed"]:
        for p in r["persons"]:
            frames_of.setdefault(p["track_id"], []).append(r["frame_index"])
    for track_id, seen in frames_of.items():
        gaps = [b - a - 1 for a, b in itertools.pairwise(seen)]
        assert max(gaps, default=0) <= 10, f"track {track_id} came back after {max(gaps)} frames"
    firsts = sorted((seen[0], tid) for tid, seen in frames_of.items())
    assert [tid for _, tid in firsts] == sorted(frames_of)  # IDs are handed out in order


def test_http_video_gives_the_same_persons_per_frame(service, clip_runs):
    with httpx.stream(
        "POST",
        f"{service.http}/v1/pose/video",
        content=CLIP.read_bytes(),
        params=CLIP_OPTIONS,
        headers={"content-type": "video/mp4"},
        timeout=600,
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    grpc_results = clip_runs["smoothed"]
    assert len(lines) == len(grpc_results) == 280
    for http, rpc in zip(lines, grpc_results, strict=True):
        assert http["frame_index"] == rpc["frame_index"]
        assert http["timestamp"] == pytest.approx(rpc["timestamp"])
        assert http["persons"] == rpc["persons"], f"frame {rpc['frame_index']} differs"
        assert http["image"] == {**rpc["image"], "format": "h264"}
        assert http["models"] == rpc["models"] and http["warnings"] == rpc["warnings"]


def test_smoothing_reduces_keypoint_jitter_without_changing_the_tracks(clip_runs, capsys):
    smoothed, raw = clip_runs["smoothed"], clip_runs["raw"]
    for s, r in zip(smoothed, raw, strict=True):
        assert [(p["track_id"], p["bbox"]) for p in s["persons"]] == [
            (p["track_id"], p["bbox"]) for p in r["persons"]
        ]
    jitter_raw, jitter_smoothed = mean_displacement(raw), mean_displacement(smoothed)
    with capsys.disabled():
        print(
            f"\nmean keypoint displacement between frames: raw {jitter_raw:.2f} px, "
            f"One-Euro smoothed {jitter_smoothed:.2f} px"
        )
    assert jitter_smoothed < 0.8 * jitter_raw


def test_a_corrupt_frame_gets_an_error_result_and_the_stream_goes_on(service):
    frames = list(clip_frames()[:12])
    frames[5] = SourceFrame(pb.Image(encoded=b"\xff\xd8\xff\xe0" + b"\x17" * 200), None)
    frames[8] = SourceFrame(pb.Image(raw=pb.RawImage(pixels=b"\0" * 99, width=10, height=10)), None)
    results = run_grpc(service, frames, fps=28.0, **CLIP_OPTIONS)
    assert [r["frame_index"] for r in results] == list(range(12))
    for i in (5, 8):
        assert results[i]["error"]["code"] == "invalid_image"
        assert results[i]["persons"] == [] and results[i]["image"] is None
        assert results[i]["timestamp"] == pytest.approx(i / 28)  # no timestamp: fps applies
    assert "300 bytes" in results[8]["error"]["message"]
    good = [r for i, r in enumerate(results) if i not in (5, 8)]
    assert all(r["persons"] and r["error"] is None for r in good)
    # frame 5 was due for detection: the detector runs on the next good frame instead, and
    # then again 5 good frames later (frame 12)
    assert [i for i, r in enumerate(results) if r["detected"]] == [0, 6]


def test_cancelling_mid_stream_leaves_no_task_thread_or_triton_request(service):
    target = f"127.0.0.1:{service.grpc_port}"
    run_grpc(service, clip_frames()[:3])  # warm: the decode thread pool exists
    wait_until(lambda: runtime(service)["streams"] == 0, 30, "the warm-up stream to end")
    baseline = runtime(service)
    pipeline_before = executions(service, PIPELINE)
    endless = itertools.islice(itertools.cycle(clip_frames()), 2000)
    with channel(target) as ch:
        call = pb_grpc.PoseServiceStub(ch).Stream(
            stream_requests(pb.StreamConfig(det_interval=5), endless)
        )
        received = [next(call) for _ in range(4)]
        assert runtime(service)["streams"] == 1
        call.cancel()
        with pytest.raises(grpc.RpcError) as info:
            for _ in call:  # whatever was already on its way, then CANCELLED
                pass
        assert info.value.code() == grpc.StatusCode.CANCELLED

    wait_released(service, baseline, "the stream")
    wait_until(lambda: not any(pending_requests(service).values()), 60, "no pending requests")
    # each frame takes one pipeline call at most; the server stopped right after the cancel
    sent = executions(service, PIPELINE) - pipeline_before
    assert len(received) <= sent <= len(received) + 2, sent


def test_a_stream_over_the_frame_limit_ends_with_resource_exhausted(service):
    black = SourceFrame(raw_image(np.zeros((48, 64, 3), np.uint8)), None)
    config = pb.StreamConfig(det_interval=100)  # no person anywhere: cheap frames
    results = []
    with pytest.raises(grpc.RpcError) as info:
        for message in stream(f"127.0.0.1:{service.grpc_port}", config, [black] * 301):
            results.append(message)
    assert len(results) == 300  # the fixture's RTMSERVE_MAX_VIDEO_FRAMES
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 300 frames" in info.value.details()


def test_a_stream_over_the_duration_limit_ends_with_resource_exhausted(service):
    black = raw_image(np.zeros((48, 64, 3), np.uint8))
    frames = [SourceFrame(black, t) for t in (10.0, 40.0, 70.5)]  # 60.5 s after the first
    results = []
    with pytest.raises(grpc.RpcError) as info:
        for message in stream(f"127.0.0.1:{service.grpc_port}", pb.StreamConfig(), frames):
            results.append(message)
    assert [r.timestamp for r in results] == [10.0, 40.0]
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 60 s" in info.value.details()


def test_bad_streams_get_clear_statuses(service):
    target = f"127.0.0.1:{service.grpc_port}"
    frame = clip_frames()[0]

    def status(requests) -> grpc.RpcError:
        with channel(target) as ch, pytest.raises(grpc.RpcError) as info:
            list(pb_grpc.PoseServiceStub(ch).Stream(iter(requests), timeout=120))
        return info.value

    late = status([pb.StreamRequest(frame=pb.Frame(image=frame.image)),
                   pb.StreamRequest(config=pb.StreamConfig())])  # fmt: skip
    assert late.code() == grpc.StatusCode.INVALID_ARGUMENT and "first" in late.details()
    unknown = status([pb.StreamRequest(config=pb.StreamConfig(pose_model="nope"))])
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and "nope" in unknown.details()
    bad = status([pb.StreamRequest(config=pb.StreamConfig(det_interval=0, pose_nms_thr=2))])
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "det_interval" in bad.details() and "pose_nms_thr" in bad.details()
    empty = status([pb.StreamRequest(config=pb.StreamConfig()), pb.StreamRequest()])
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a config and no frame is a valid, empty stream
    assert run_grpc(service, []) == []
