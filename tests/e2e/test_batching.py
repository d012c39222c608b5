"""The pipeline as the GPU configs run it (BLS calls to the detector and pose models), here on
the CPU server: crops from concurrent requests meet in the pose model's dynamic batcher, and
the keypoints are those of the CPU default (the ONNX files run in the pipeline's process).

Every request asks for one person (max_persons=1), so each sends exactly one crop to the pose
model: any execution of batch size > 1 is necessarily made of crops from different requests.
Triton's own statistics API is the witness.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from rtmserve.launch import start_service
from service.core.image import decode
from service.core.local import LocalPipeline
from service.core.specs import OneStageSpec
from service.settings import Settings
from tests.support.cli import models_cli
from tests.support.paths import MODELS_MIRROR

POSE = "rtmpose-m"


@pytest.fixture(scope="module")
def bls_service(tmp_path_factory):
    svc = start_service(
        tmp_path_factory.mktemp("bls-home"),
        MODELS_MIRROR,
        {
            "RTMSERVE_CPU_LOCAL_MODELS": "0",
            "RTMSERVE_POSE_MODEL": POSE,
            "RTMSERVE_ALLOW_UNTRAINED": "1",
            "RTMSERVE_PIPELINE_INSTANCES": "8",
        },
    )
    yield svc
    assert svc.stop() == 0, svc.log_tail()


def batch_stats(service, model: str = POSE) -> dict[int, int]:
    """{batch size: executions} of a model, from Triton's statistics API."""
    r = httpx.get(f"{service.triton_http}/v2/models/{model}/stats", timeout=10)
    r.raise_for_status()
    stats = r.json()["model_stats"]
    return {
        b["batch_size"]: int(b["compute_infer"]["count"]) for s in stats for b in s["batch_stats"]
    }


def keypoints(svc, photo: bytes) -> np.ndarray:
    r = httpx.post(f"{svc.http}/v1/pose", content=photo, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["models"]["pose"]["name"] == POSE
    return np.array([[[k["x"], k["y"], k["score"]] for k in p["keypoints"]]
                     for p in r.json()["persons"]])  # fmt: skip


def test_bls_and_local_pipelines_give_the_same_keypoints(bls_service, service, coco_images):
    people = {"000000196141", "000000000139", "000000040083"}
    for photo in (p for p in coco_images if p.stem in people):
        data = photo.read_bytes()
        bls, local = keypoints(bls_service, data), keypoints(service, data)
        assert bls.shape == local.shape and bls.size > 0
        # the same ONNX file and inputs in two processes: equal up to the crop batch's
        # composition (onnxruntime may pick other kernels for another batch size)
        np.testing.assert_allclose(bls, local, atol=1e-3)


def test_eight_concurrent_clients_share_pose_batches(bls_service, coco_images, capsys):
    wanted = {"000000196141", "000000000139", "000000040083", "000000197388",
              "000000183709", "000000350679", "000000034417", "000000126107"}  # fmt: skip
    photos = [p.read_bytes() for p in coco_images if p.stem in wanted]
    assert len(photos) == 8
    service = bls_service
    before = batch_stats(service)

    def client(i: int) -> int:
        with httpx.Client(base_url=service.http, timeout=300) as c:
            for k in range(6):
                r = c.post("/v1/pose", content=photos[(i + k) % 8], params={"max_persons": 1})
                assert r.status_code == 200, r.text
                assert len(r.json()["persons"]) == 1
        return 6

    with ThreadPoolExecutor(8) as pool:
        sent = sum(pool.map(client, range(8)))

    after = batch_stats(service)
    delta = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    delta = {b: n for b, n in delta.items() if n}
    with capsys.disabled():
        print(f"\npose-model executions by batch size over {sent} single-crop requests: {delta}")
    assert sum(b * n for b, n in delta.items()) == sent  # every crop ran exactly once
    assert any(b > 1 for b in delta), f"no batch merged crops of different requests: {delta}"


def test_rtmo_batches_whole_images_of_concurrent_requests(bls_service, rtmo_onnx, coco_images,
                                                          capsys):  # fmt: skip
    r = models_cli(bls_service, "register", "rtmo-s", str(rtmo_onnx[0]), "--like", "rtmo-s")
    assert r.returncode == 0, r.stderr
    photos = [p.read_bytes() for p in coco_images[:8]]
    local = LocalPipeline(None, (rtmo_onnx[0], OneStageSpec()))
    settings = Settings()
    before = batch_stats(bls_service, "rtmo-s")

    def client(i: int) -> list[tuple[bytes, dict]]:
        with httpx.Client(base_url=bls_service.http, timeout=300) as c:
            out = []
            for k in range(2):
                photo = photos[(i + k) % 8]
                r = c.post("/v1/pose", content=photo, params={"pose_model": "rtmo-s"})
                assert r.status_code == 200, r.text
                out.append((photo, r.json()))
            return out

    with ThreadPoolExecutor(8) as pool:
        answers = [a for batch in pool.map(client, range(8)) for a in batch]
    after = batch_stats(bls_service, "rtmo-s")
    delta = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    delta = {b: n for b, n in delta.items() if n}
    with capsys.disabled():
        print(f"\nRTMO executions by batch size over {len(answers)} images: {delta}")
    assert sum(b * n for b, n in delta.items()) == len(answers)
    assert any(b > 1 for b in delta), delta
    for photo, body in answers:  # batched or not, each image gets its own people
        want = local(decode(photo), settings.score_threshold, settings.max_persons)
        got = np.array([[*p["bbox"], p["score"]] for p in body["persons"]]).reshape(-1, 5)
        assert got.shape == want.boxes.shape
        np.testing.assert_allclose(got, want.boxes, atol=0.05)
