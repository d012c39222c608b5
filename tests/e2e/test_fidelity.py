"""The service equals the official MMDeploy SDK on every image of the COCO evaluation subset.

Same detector file for both; for the pose side the SDK gets the RTMPose-m SDK metadata from
../shared/models with the service's own exported ONNX as its ``end2end.onnx``. Boxes are
compared at the SDK's own score floor (everything the detector emits, requested without
keypoints), which is also how COCO box AP is computed, and again at the service's default
threshold (0.3), where the keypoints are compared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.support.box_agreement import EPS_IOU, EPS_SCORE, boundary_cases
from tests.support.paths import COCO_VAL, MODELS_MIRROR, REPO

pytest.importorskip("mmdeploy_runtime")
pycocotools = pytest.importorskip("pycocotools")

DETECTOR_SDK = MODELS_MIRROR / "rtmdet-nano_person_320x320_ort-end2end"
POSE_METADATA = MODELS_MIRROR / "rtmpose-m_aic-coco_256x192_sdk-metadata-only"


def box_ap(per_image: dict[int, np.ndarray]) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(COCO_VAL / "person_keypoints.json"))
    results = [
        {
            "image_id": image_id,
            "category_id": 1,
            "score": float(b[4]),
            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
        }
        for image_id, boxes in per_image.items()
        for b in boxes
    ]
    evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
    evaluator.params.catIds = [1]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0])


def _post(service, path, **params) -> tuple[np.ndarray, np.ndarray]:
    r = httpx.post(f"{service.http}/v1/pose", content=path.read_bytes(), params=params, timeout=600)
    assert r.status_code == 200, r.text
    persons = r.json()["persons"]
    boxes = np.array([[*p["bbox"], p["score"]] for p in persons], np.float32).reshape(-1, 5)
    kpts = [[[k["x"], k["y"], k["score"]] for k in p["keypoints"]] for p in persons]
    return boxes, np.array(kpts, np.float32).reshape(len(persons), -1, 3) if persons else None


@pytest.fixture(scope="module")
def detected(service, coco_images) -> list[np.ndarray]:
    """Every box the detector emits (threshold 0, no keypoints): what box AP is computed on."""
    with ThreadPoolExecutor(4) as pool:
        return [
            b
            for b, _ in pool.map(
                lambda p: _post(service, p, score_threshold=0, max_persons=1000, keypoints=False),
                coco_images,
            )
        ]


@pytest.fixture(scope="module")
def served(service, coco_images) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boxes and keypoints at the service's default threshold (0.3)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda p: _post(service, p), coco_images))


@pytest.fixture(scope="module")
def sdk(service, coco_images, served, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdk")
    pose_dir = tmp / "rtmpose-m"
    shutil.copytree(POSE_METADATA, pose_dir)
    version = json.loads((service.repository / "rtmpose-m" / "rtmserve.json").read_text())
    onnx = service.repository / "rtmpose-m" / str(version["serving_version"]) / "model.onnx"
    shutil.copyfile(onnx, pose_dir / "end2end.onnx")
    np.savez(
        tmp / "in.npz",
        paths=np.array([str(p) for p in coco_images]),
        boxes=np.concatenate([b for b, _ in served]),
        counts=np.array([len(b) for b, _ in served]),
    )
    cmd = [
        sys.executable,
        "-m",
        "tests.support.sdk_reference",
        str(DETECTOR_SDK),
        str(pose_dir),
        str(tmp / "in.npz"),
        str(tmp / "out.npz"),
    ]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    out = np.load(tmp / "out.npz")
    dets = np.split(out["dets"], np.cumsum(out["det_counts"])[:-1])
    kpts = np.split(out["keypoints"], np.cumsum([len(b) for b, _ in served])[:-1])
    return dets, kpts


def _sdk_postprocess() -> tuple[float, float]:
    """The detector's score floor and NMS IoU threshold, from the SDK's own pipeline.json."""
    pipeline = json.loads((DETECTOR_SDK / "pipeline.json").read_text())
    tasks = pipeline["pipeline"]["tasks"]
    post = next(t for t in tasks if t.get("component") == "ResizeBBox")["params"]
    return float(post["score_thr"]), float(post["nms"]["iou_threshold"])


SCORE_FLOOR, NMS_IOU = _sdk_postprocess()


def _compare(coco_images, ours_per_image, sdk_per_image, threshold: float) -> list[dict]:
    """Boxes must agree exactly except at decision boundaries; returns the boundary cases."""
    tolerated, total = [], 0
    for path, ours, theirs in zip(coco_images, ours_per_image, sdk_per_image, strict=True):
        cases = boundary_cases(ours, theirs, threshold, NMS_IOU)
        assert not isinstance(cases, str), f"{path.name} (threshold {threshold}): {cases}"
        tolerated += [{"image": path.name, **c} for c in cases]
        total += len(ours) + len(theirs)
    # Boundary cases are rare by nature: many of them would mean a real difference.
    assert len(tolerated) <= 0.01 * total, f"{len(tolerated)} boundary cases of {total} boxes"
    return tolerated


def test_boxes_match_the_sdk_on_every_image(coco_images, detected, served, sdk, capsys):
    """Exact agreement at the served threshold and, at the detector's floor, for every box not
    within EPS_SCORE of a score threshold or EPS_IOU of the NMS IoU threshold; the boundary
    cases tolerated are printed."""
    sdk_dets, _ = sdk
    at_floor = _compare(coco_images, detected, sdk_dets, SCORE_FLOOR)
    served_boxes = [b for b, _ in served]
    at_served = _compare(coco_images, served_boxes, [d[d[:, 4] > 0.3] for d in sdk_dets], 0.3)

    ids = [int(p.stem) for p in coco_images]
    with capsys.disabled():
        boxes = sum(len(b) for b in detected)
        print(
            f"\nboxes vs MMDeploy SDK: {boxes} at the floor {SCORE_FLOOR}, "
            f"{sum(len(b) for b in served_boxes)} at the served 0.3; boundary cases tolerated "
            f"(score within {EPS_SCORE} of a threshold, IoU within {EPS_IOU} of NMS {NMS_IOU}): "
            f"{len(at_floor)} at the floor, {len(at_served)} served"
        )
        for case in at_floor + at_served:
            print(f"  {case}")
        print("RTMDet-nano person box AP on coco_val_subset (110 images, no threshold):")
        ours_ap = box_ap(dict(zip(ids, detected, strict=True)))
        sdk_ap = box_ap(dict(zip(ids, sdk_dets, strict=True)))
        print(f"box AP  service: {ours_ap:.4f}   MMDeploy SDK: {sdk_ap:.4f}")
    assert abs(ours_ap - sdk_ap) < 1e-3


def test_keypoints_match_the_sdk_for_the_same_boxes(served, sdk, capsys):
    _, sdk_kpts = sdk
    ours = np.concatenate([k for _, k in served if k is not None])
    theirs = np.concatenate(sdk_kpts)
    assert ours.shape == theirs.shape and ours.shape[1:] == (17, 3) and len(ours) > 100
    dist = np.linalg.norm(ours[..., :2] - theirs[..., :2], axis=-1)
    score_diff = np.abs(ours[..., 2] - theirs[..., 2])
    agree = (dist <= 0.5) & (score_diff <= 1e-3)
    with capsys.disabled():
        print(
            f"\nkeypoints vs MMDeploy SDK: {agree.mean():.4%} of {agree.size} within 0.5 px and "
            f"1e-3 score; median distance {np.median(dist):.4f} px, max score diff "
            f"{score_diff.max():.2e}"
        )
    assert agree.mean() >= 0.99
