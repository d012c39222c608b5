"""RTMO (one-stage) next to top-down, per request, through every API of the real service.

The served RTMO-s is a seeded export with the official I/O signature and compute (weights
cannot be had here): its people are whatever the random net finds, so the tests compare the
served answers with the same file run in-process by ``service.core`` (itself checked against
an mmpose reference in tests/unit/test_rtmo.py), and between APIs.
"""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np
import pytest

from rtmserve.client.grpc import channel, frame_result, stream
from service.app.schemas import PoseResponse
from service.core.image import decode
from service.core.local import LocalPipeline
from service.core.specs import OneStageSpec
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from service.grpc.messages import to_model
from service.settings import Settings
from tests.support.cli import models_cli
from tests.support.streaming import clip_frames, clip_images, write_video

RTMO = "rtmo-s"
PHOTOS = ("000000196141", "000000000139", "000000040083")  # people, several of them
FRAMES = 24


@pytest.fixture(scope="module")
def rtmo(service, rtmo_onnx):
    r = models_cli(service, "register", RTMO, str(rtmo_onnx[0]), "--like", RTMO)
    assert r.returncode == 0, r.stderr
    return RTMO


@pytest.fixture(scope="module")
def photos(coco_images) -> list[bytes]:
    return [p.read_bytes() for p in coco_images if p.stem in PHOTOS]


def persons(body: dict) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.array([[*p["bbox"], p["score"]] for p in body["persons"]]).reshape(-1, 5)
    kpts = np.array([[[k["x"], k["y"], k["score"]] for k in p["keypoints"]]
                     for p in body["persons"]]).reshape(len(boxes), 17, 3)  # fmt: skip
    return boxes, kpts


def test_http_serves_rtmo_per_request_with_no_detector(service, rtmo, rtmo_onnx, photos):
    local = LocalPipeline(None, (rtmo_onnx[0], OneStageSpec()))
    settings = Settings()
    found = 0
    for photo in photos:
        r = httpx.post(f"{service.http}/v1/pose", content=photo, params={"pose_model": rtmo},
                       timeout=120)  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["models"]["detector"] is None
        assert body["models"]["pose"]["name"] == rtmo  # registered: the user vouches for it
        assert body["timings"]["stages_ms"]["detector"] == 0 < body["timings"]["stages_ms"]["pose"]
        boxes, kpts = persons(body)
        want = local(decode(photo), settings.score_threshold, settings.max_persons)
        assert boxes.shape == want.boxes.shape and kpts.shape == want.keypoints.shape
        np.testing.assert_allclose(boxes, want.boxes, atol=1e-3)  # JSON keeps 4 decimals
        np.testing.assert_allclose(kpts, want.keypoints, atol=1e-3)
        found += len(boxes)
    assert found > 0
    # the same request without pose_model still gets top-down, with its detector
    r = httpx.post(f"{service.http}/v1/pose", content=photos[0], timeout=120)
    assert r.json()["models"]["detector"]["name"] == "rtmdet-nano"


def test_grpc_estimate_answers_what_http_answers(service, rtmo, photos):
    r = httpx.post(f"{service.http}/v1/pose", content=photos[0], params={"pose_model": rtmo},
                   timeout=120)  # fmt: skip
    with channel(f"127.0.0.1:{service.grpc_port}") as ch:
        stub = pb_grpc.PoseServiceStub(ch)
        request = pb.EstimateRequest(image=pb.Image(encoded=photos[0]), pose_model=rtmo)
        reply = stub.Estimate(request)
    rpc = to_model(reply, PoseResponse).model_dump(mode="json")
    http = r.json()
    assert rpc["models"]["detector"] is None
    assert rpc["persons"] == http["persons"]


def test_models_lists_rtmo_as_one_stage(service, rtmo):
    models = httpx.get(f"{service.http}/v1/models", timeout=10).json()
    listed = {m["name"]: m for m in models["models"]}
    assert listed[rtmo]["task"] == "one-stage"
    assert listed["rtmdet-nano"]["task"] == "detector"


def test_a_detector_named_with_rtmo_is_refused_on_both_apis(service, rtmo, photos):
    r = httpx.post(f"{service.http}/v1/pose", content=photos[0],
                   params={"pose_model": rtmo, "detector": "rtmdet-nano"}, timeout=60)  # fmt: skip
    assert r.status_code == 422 and "one-stage" in r.json()["error"]["message"]
    with channel(f"127.0.0.1:{service.grpc_port}") as ch:
        stub = pb_grpc.PoseServiceStub(ch)
        request = pb.EstimateRequest(image=pb.Image(encoded=photos[0]), pose_model=rtmo,
                                     detector="rtmdet-nano")  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            stub.Estimate(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def streamed(service, rtmo) -> list[dict]:
    config = pb.StreamConfig(pose_model=rtmo, det_interval=5)  # no interval for one stage
    target = f"127.0.0.1:{service.grpc_port}"
    return [frame_result(m).model_dump() for m in stream(target, config, clip_frames()[:FRAMES])]


def test_a_stream_runs_rtmo_on_every_frame_and_tracks_its_people(streamed):
    assert [r["frame_index"] for r in streamed] == list(range(FRAMES))
    assert all(r["detected"] and r["error"] is None for r in streamed)
    assert all(r["timings"]["stages_ms"]["detector"] == 0 for r in streamed)
    assert all(r["timings"]["stages_ms"]["pose"] > 0 for r in streamed)
    assert all(r["models"]["detector"] is None for r in streamed)
    ids = [p["track_id"] for r in streamed for p in r["persons"]]
    assert ids, "RTMO found no one in the clip"
    assert len(set(ids)) < len(ids)  # people keep their IDs from frame to frame
    for r in streamed:
        assert all(p["detected"] and len(p["keypoints"]) == 17 for p in r["persons"])


def test_http_video_runs_rtmo_on_every_frame(service, rtmo, streamed):
    video = write_video(clip_images(FRAMES), "mp4", "libx264")
    with httpx.stream("POST", f"{service.http}/v1/pose/video", content=video,
                      params={"pose_model": rtmo}, headers={"content-type": "video/mp4"},
                      timeout=600) as r:  # fmt: skip
        assert r.status_code == 200, r.read()
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [line["frame_index"] for line in lines] == list(range(FRAMES))
    for line in lines:
        assert line["detected"] and line["error"] is None
        assert line["models"] == streamed[0]["models"]  # RTMO, no detector
        assert line["timings"]["stages_ms"]["detector"] == 0 < line["timings"]["stages_ms"]["pose"]
    assert any(line["persons"] for line in lines)
