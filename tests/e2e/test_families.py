"""The model zoo's families served end to end: whole-body (133), body + feet (Halpe-26), hands
(21, with the hand detector) and animals (AP-10K-17), each a seeded export with the official
I/O (input size, keypoint count, SimCC bins) registered under its catalogue name, served by the
embedded Triton and compared with the official MMDeploy SDK's ``PoseDetector`` on the same
boxes; and a 133-keypoint video stream, tracked and smoothed.

Official family weights cannot be had here; the hand detector is a stand-in (the real person
RTMDet-nano file under ``rtmdet-nano-hand``, the same I/O): what is tested is that a hand
request runs the hand detector, not that it finds hands. The animal detector is real: Megvii's
YOLOX-nano COCO-80 from ../shared/models.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import cv2
import grpc
import httpx
import numpy as np
import pytest

from rtmserve.client.grpc import frame_result, stream
from service.app.schemas import FrameResult, PoseResponse
from service.core.contract import session
from service.core.keypoints import keypoint_set
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from service.grpc.messages import to_model
from service.models.catalogue import ANIMAL_DETECTOR, CATALOGUE, COCO_ANIMALS, HAND_DETECTOR
from tests.support.cli import models_cli
from tests.support.paths import (
    POSE_SDK_METADATA,
    REPO,
    RTMDET_DIR,
    RTMDET_ONNX,
    YOLOX_COCO80_ONNX,
)
from tests.support.streaming import clip_frames, clip_images, write_video
from tests.support.yolox_reference import megvii_detect
from training.sdk_metadata import sdk_pose_dir

pytest.importorskip("mmdeploy_runtime")

# catalogue name -> (keypoint set, variant of the seeded stand-in)
FAMILIES = {
    "rtmw-l-m": "coco_wholebody",
    "rtmpose-s-halpe26": "halpe26",
    "rtmpose-m-hand": "hand21",
    "rtmpose-m-ap10k": "ap10k",
}
PHOTOS = slice(44, 52)


@pytest.fixture(scope="module")
def families(service, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("families")
    run = models_cli(service, "register", HAND_DETECTOR, str(RTMDET_ONNX), "--like", HAND_DETECTOR)
    assert run.returncode == 0, run.stderr
    run = models_cli(service, "register", ANIMAL_DETECTOR, str(YOLOX_COCO80_ONNX), "--like",
                     ANIMAL_DETECTOR)  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = {}
    for name, kset in FAMILIES.items():
        w, h = CATALOGUE[name].input_size
        onnx = tmp / f"{name}.onnx"
        cmd = [sys.executable, "-m", "training.export", "--variant", "t", "--seed", "0",
               "--input-size", str(w), str(h), "--keypoint-set", kset,
               "--output", str(onnx)]  # fmt: skip
        export = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
        assert export.returncode == 0, export.stderr[-2000:]
        run = models_cli(service, "register", name, str(onnx), "--like", name)
        assert run.returncode == 0, run.stderr
        out[name] = onnx
    return out


def _post(service, photo, **params) -> dict:
    r = httpx.post(f"{service.http}/v1/pose", content=photo.read_bytes(), params=params,
                   timeout=300)  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


def test_models_lists_every_family_with_its_keypoint_set(service, families):
    listed = {m["name"]: m for m in httpx.get(f"{service.http}/v1/models", timeout=30).json()[
        "models"]}  # fmt: skip
    for name, kset in FAMILIES.items():
        assert listed[name]["keypoint_set"] == kset
        assert listed[name]["spec"]["keypoint_names"] == list(keypoint_set(kset).keypoints)
    assert listed["rtmdet-nano"]["keypoint_set"] is None


def test_a_hand_request_runs_the_hand_detector(service, families, coco_images):
    body = _post(service, coco_images[50], pose_model="rtmpose-m-hand")
    assert body["models"]["detector"]["name"] == HAND_DETECTOR
    assert body["timings"]["stages_ms"]["detector"] > 0 and body["persons"]
    names = [k["name"] for k in body["persons"][0]["keypoints"]]
    assert names == list(keypoint_set("hand21").keypoints)
    # the body models keep the person detector; a request may still name any detector
    body = _post(service, coco_images[50], pose_model="rtmw-l-m")
    assert body["models"]["detector"]["name"] == "rtmdet-nano"
    body = _post(service, coco_images[50], pose_model="rtmpose-m-hand", detector="rtmdet-nano")
    assert body["models"]["detector"]["name"] == "rtmdet-nano"


def test_an_animal_request_runs_yolox_and_keeps_megvii_animals(service, families, coco_images):
    """AP-10K's family detector: YOLOX-nano COCO-80 decoded in the pipeline, kept to the animal
    classes; its boxes are Megvii's demo's (tests/support/yolox_reference.py) above 0.3."""
    sess = session(YOLOX_COCO80_ONNX, quiet=True)

    def animals(path):
        ref = megvii_detect(sess, cv2.imread(str(path)))
        return ref[np.isin(ref[:, 5].astype(int), COCO_ANIMALS) & (ref[:, 4] > 0.3)]

    photo, ref = next((p, a) for p in coco_images if len(a := animals(p)))
    body = _post(service, photo, pose_model="rtmpose-m-ap10k")
    assert body["models"]["detector"]["name"] == ANIMAL_DETECTOR
    boxes = np.array([[*p["bbox"], p["score"]] for p in body["persons"]])
    order = np.argsort(-ref[:, 4], kind="stable")
    assert boxes.shape == (len(ref), 5)
    np.testing.assert_allclose(boxes, ref[order, :5], atol=0.01)
    assert len(body["persons"][0]["keypoints"]) == 17


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_keypoints_equal_the_sdk_on_the_same_boxes(service, families, coco_images, name,
                                                   tmp_path):  # fmt: skip
    """>= 99 % of keypoints within 0.5 px and 1e-3 score of MMDeploy's PoseDetector (SDK
    metadata of RTMPose with this model's input size; the SDK reads K from the outputs)."""
    photos = coco_images[PHOTOS]
    params = {"pose_model": name, "detector": "rtmdet-nano"}
    served = [_post(service, p, **params)["persons"] for p in photos]
    boxes = [
        np.array([p["bbox"] for p in persons], np.float32).reshape(-1, 4) for persons in served
    ]
    ours = np.array([[[k["x"], k["y"], k["score"]] for k in p["keypoints"]]
                     for persons in served for p in persons], np.float32)  # fmt: skip
    k = len(keypoint_set(FAMILIES[name]))
    assert ours.shape[1:] == (k, 3) and len(ours) >= 5
    pose_dir = sdk_pose_dir(POSE_SDK_METADATA, families[name], CATALOGUE[name].input_size,
                            tmp_path / "sdk")  # fmt: skip
    np.savez(tmp_path / "in.npz", paths=np.array([str(p) for p in photos]),
             boxes=np.concatenate(boxes), counts=np.array([len(b) for b in boxes]))  # fmt: skip
    cmd = [sys.executable, "-m", "tests.support.sdk_reference", str(RTMDET_DIR), str(pose_dir),
           str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]  # fmt: skip
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    theirs = np.load(tmp_path / "out.npz")["keypoints"]
    assert theirs.shape == ours.shape
    dist = np.linalg.norm(ours[..., :2] - theirs[..., :2], axis=-1)
    agree = (dist <= 0.5) & (np.abs(ours[..., 2] - theirs[..., 2]) <= 1e-3)
    print(f"\n{name}: {agree.mean():.4%} of {agree.size} keypoints agree with the SDK")
    assert agree.mean() >= 0.99


def test_every_api_serves_the_families(service, families, coco_images):
    """gRPC unary answers what HTTP answers; /v1/pose/render draws a whole-body answer; HTTP
    video tracks Halpe-26 people: one schema for every family."""
    photo = coco_images[50]
    http = _post(service, photo, pose_model="rtmpose-m-hand")
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        request = pb.EstimateRequest(image=pb.Image(encoded=photo.read_bytes()),
                                     pose_model="rtmpose-m-hand")  # fmt: skip
        reply = pb_grpc.PoseServiceStub(channel).Estimate(request, timeout=120)
    unary = to_model(reply, PoseResponse).model_dump(mode="json")
    assert unary["persons"] == http["persons"] and unary["models"]["detector"]["name"] == (
        HAND_DETECTOR)  # fmt: skip
    r = httpx.post(f"{service.http}/v1/pose/render", content=photo.read_bytes(), timeout=120,
                   params={"pose_model": "rtmw-l-m"}, headers={"accept": "image/png"})  # fmt: skip
    assert r.status_code == 200 and int(r.headers["x-pose-persons"]) > 0
    assert r.content[:4] == b"\x89PNG"
    clip = write_video(clip_images(6), "mp4", "libx264")
    lines = httpx.post(f"{service.http}/v1/pose/video", content=clip, timeout=300,
                       params={"pose_model": "rtmpose-s-halpe26"}).text.splitlines()  # fmt: skip
    results = [FrameResult.model_validate_json(x) for x in lines]
    assert len(results) == 6 and any(r.persons for r in results)
    assert all(len(p.keypoints) == 26 for r in results for p in r.persons)


def test_a_133_keypoint_stream_is_tracked_and_smoothed(service, families):
    frames = clip_frames()[:24]
    target = f"127.0.0.1:{service.grpc_port}"

    def run(smoothing: bool) -> list:
        config = pb.StreamConfig(pose_model="rtmw-l-m", det_interval=3, smoothing=smoothing)
        return [frame_result(m) for m in stream(target, config, frames)]

    smooth, raw = run(True), run(False)
    assert len(smooth) == len(frames)
    people = [r for r in smooth if r.persons]
    assert people and all(len(p.keypoints) == 133 for r in people for p in r.persons)
    ids = [{p.track_id for p in r.persons} for r in smooth]
    longest = max(sum(i in frame for frame in ids) for i in set().union(*ids))
    assert longest >= len(ids) // 2, ids  # a track holds through half the clip at least

    def jitter(results) -> float:
        """Mean keypoint displacement between consecutive frames of the same track."""
        steps = []
        for a, b in itertools.pairwise(results):
            prev = {p.track_id: p for p in a.persons}
            for p in b.persons:
                if p.track_id in prev:
                    xy = np.array([[k.x, k.y] for k in p.keypoints])
                    xy0 = np.array([[k.x, k.y] for k in prev[p.track_id].keypoints])
                    steps.append(np.linalg.norm(xy - xy0, axis=1).mean())
        return float(np.mean(steps))

    assert jitter(smooth) < jitter(raw)
