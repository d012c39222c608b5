"""Keypoint sets as data (``service.core.keypoints``) and the families of the catalogue."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from service.core.keypoints import COCO, keypoint_set, keypoint_sets, set_of
from service.core.specs import PoseSpec
from service.models import CATALOGUE, ModelUnavailable, pull
from service.models.catalogue import HAND_DETECTOR
from training.evaluate import coco_keypoint_ap

SIZES = {"coco": 17, "halpe26": 26, "coco_wholebody": 133, "hand21": 21, "ap10k": 17,
         "face106": 106}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_set_is_consistent(name):
    s = keypoint_set(name)
    k = len(s)
    assert k == SIZES[name] and len(set(s.keypoints)) == k
    assert all(s.flip_indices[s.flip_indices[i]] == i for i in range(k))  # mirror of mirror
    for i, n in enumerate(s.keypoints):  # left and right swap, the midline stays
        mirror = s.keypoints[s.flip_indices[i]]
        if n.startswith("left_"):
            assert mirror == "right_" + n[5:], (n, mirror)
    assert all(0 <= a < k and 0 <= b < k for a, b in s.skeleton)
    assert len(s.link_colors) == len(s.skeleton) and len(s.keypoint_colors) == k
    assert len(s.sigmas) in (0, k) and all(0 < x < 1 for x in s.sigmas)
    assert set_of(s.keypoints) is s


def test_coco_is_the_benchmark_convention():
    assert COCO.keypoints[0] == "nose" and COCO.keypoints[-1] == "right_ankle"
    assert COCO.sigmas[:3] == (0.026, 0.025, 0.025) and COCO.sigmas[-1] == 0.089
    assert COCO.flip_indices == (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
    assert len(COCO.skeleton) == 19 and COCO.skeleton[0] == (15, 13)
    # whole-body and Halpe extend the COCO body: same first 17 keypoints and sigmas
    for name in ("coco_wholebody", "halpe26"):
        assert keypoint_set(name).keypoints[:17] == COCO.keypoints
    assert keypoint_set("coco_wholebody").sigmas[:17] == COCO.sigmas
    assert PoseSpec().keypoint_names == COCO.keypoints


def test_the_catalogue_covers_the_seed_zoo_with_one_set_per_family():
    pose = [e for e in CATALOGUE.values() if e.task == "pose"]
    families = {e.family for e in pose}
    assert families >= {"body", "body-feet", "wholebody", "hand", "animal", "face"}
    want = {"body": "coco", "body-feet": "halpe26", "wholebody": "coco_wholebody",
            "hand": "hand21", "animal": "ap10k", "face": "face106"}  # fmt: skip
    for e in pose:
        assert set_of(e.spec.keypoint_names).name == want[e.family], e.name
        assert e.to_dict()["keypoint_set"] == want[e.family]
    hands = [e for e in pose if e.family == "hand"]
    assert hands and all(e.spec.detector == HAND_DETECTOR for e in hands)
    assert CATALOGUE[HAND_DETECTOR].task == "detector"
    sizes = {e.name: e.input_hw for e in pose}
    assert sizes["rtmpose-m-384"] == "384x288" and sizes["rtmpose-m-hand"] == "256x256"
    assert sizes["rtmw-x-l"] == "384x288" and sizes["rtmpose-m-ap10k"] == "256x256"


def test_face_106_is_listed_but_refused_clearly(tmp_path):
    entry = CATALOGUE["rtmpose-m-face106"]
    assert not entry.released and entry.spec.num_keypoints == 106
    with pytest.raises(ModelUnavailable, match="not released"):
        pull("rtmpose-m-face106", tmp_path, allow_download=False)
    assert not any(tmp_path.iterdir())


def _wholebody_file(path, people: list[np.ndarray], area: float) -> None:
    """A COCO-WholeBody-style keypoint file flattened to 133 keypoints, one person per image."""
    s = keypoint_set("coco_wholebody")
    gt = {"images": [], "annotations": [], "categories": [
        {"id": 1, "name": "person", "keypoints": list(s.keypoints),
         "skeleton": [[a + 1, b + 1] for a, b in s.skeleton]}]}  # fmt: skip
    for i, kpts in enumerate(people, 1):
        gt["images"].append({"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"})
        flat = np.concatenate([kpts, np.full((133, 1), 2.0)], 1).reshape(-1)
        gt["annotations"].append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0,
                                  "area": area, "bbox": [100, 100, 200, 250],
                                  "num_keypoints": 133, "keypoints": flat.tolist()})  # fmt: skip
    path.write_text(json.dumps(gt))


def test_evaluation_uses_the_sets_sigmas(tmp_path):
    """Perfect predictions score 1.0; predictions shifted by d pixels score what OKS with the
    whole-body sigmas says, computed here by hand."""
    s = keypoint_set("coco_wholebody")
    rng = np.random.default_rng(0)
    people = [rng.uniform([100, 100], [300, 350], (133, 2)) for _ in range(3)]
    area, d = 20000.0, 6.0
    gt = tmp_path / "wholebody.json"
    _wholebody_file(gt, people, area)

    def results(shift: float) -> list[dict]:
        return [{"image_id": i, "category_id": 1, "score": 1.0,
                 "keypoints": np.concatenate([k + np.array([shift, 0.0]), np.ones((133, 1))], 1)
                 .reshape(-1).tolist()} for i, k in enumerate(people, 1)]  # fmt: skip

    assert coco_keypoint_ap(gt, results(0.0), [1, 2, 3], s.sigmas)["ap"] == pytest.approx(1.0)
    oks = np.mean([math.exp(-(d**2) / (2 * area * (2 * sg) ** 2)) for sg in s.sigmas])
    thresholds = np.linspace(0.5, 0.95, 10)
    assert np.abs(thresholds - oks).min() > 0.01  # not at a decision boundary
    expected = float((thresholds <= oks).mean())
    got = coco_keypoint_ap(gt, results(d), [1, 2, 3], s.sigmas)["ap"]
    assert got == pytest.approx(expected, abs=1e-6) and 0 < expected < 1
    # COCO's sigmas on the same file would score otherwise: the set matters
    oks_coco = np.mean([math.exp(-(d**2) / (2 * area * (2 * sg) ** 2)) for sg in COCO.sigmas])
    assert float((thresholds <= oks_coco).mean()) != expected
    assert len(keypoint_sets()) == len(SIZES)


def test_the_pruned_rtmpose_s_is_listed_and_imported_as_onnx(tmp_path):
    """MMRazor's pruned checkpoint cannot be rebuilt here: pull says how to supply it, and its
    ONNX (RTMPose's I/O) imports under the catalogue name."""
    from service.models import import_model
    from tests.support.synthetic import write_synthetic_pose_onnx

    entry = CATALOGUE["rtmpose-s-pruned"]
    assert entry.source.url.startswith("https://download.openmmlab.com/mmrazor/v1/pruning/")
    with pytest.raises(ModelUnavailable, match="rtmserve models import rtmpose-s-pruned"):
        pull("rtmpose-s-pruned", tmp_path / "cache", allow_download=False)
    onnx = write_synthetic_pose_onnx(tmp_path / "pruned.onnx")
    pulled = import_model("rtmpose-s-pruned", onnx, tmp_path / "cache")
    assert pulled.path.read_bytes() == onnx.read_bytes()
    assert pull("rtmpose-s-pruned", tmp_path / "cache", allow_download=False).path == pulled.path
