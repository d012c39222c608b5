"""The pose model trained by rtmserve and shipped in models/: checksum, card, live AP, and that
the README's run command serves it (offline, with only the detector in the mirror)."""

from __future__ import annotations

import hashlib

import httpx
import numpy as np
import pytest

from service.models.catalogue import BUNDLED_DIR, bundled_card
from tests.support.paths import COCO_VAL
from training.dataset import load_instances
from training.evaluate import evaluate_server

CARD = bundled_card()
pytestmark = pytest.mark.skipif(CARD is None, reason="no model bundled in models/")


def test_shipped_file_matches_its_model_card():
    onnx_file = CARD["file"]
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert digest == CARD["sha256"]
    assert onnx_file.stat().st_size <= 20 * 1024 * 1024
    text = (BUNDLED_DIR.parent / CARD["card"]).read_text()
    assert digest in text  # the human-readable card quotes the same checksum
    assert "not the official" in text.lower() and "rtmserve models pull rtmpose-m" in text
    # AP with ground-truth boxes on coco_val_subset: clear of an untrained export's ~0. (The
    # issue's target of 0.25 is not reached by CPU training here: see the model card.)
    assert CARD["evaluation"]["ap"] >= 0.05


def test_readme_run_command_serves_the_shipped_model_as_version_1(default_service):
    listing = httpx.get(f"{default_service.http}/v1/models", timeout=30).json()
    assert listing["default_pose_model"] == CARD["name"]
    model = next(m for m in listing["models"] if m["name"] == CARD["name"])
    assert model["serving_version"] == 1
    v1 = model["versions"][0]
    assert v1["ready"] and v1["trained"] and v1["meta"]["sha256"] == CARD["sha256"]
    assert v1["meta"]["ap"] == CARD["evaluation"]["ap"]  # registered with its evaluation
    photo = load_instances(COCO_VAL)[0].image
    answer = httpx.post(f"{default_service.http}/v1/pose", content=photo.read_bytes(), timeout=120)
    assert answer.json()["models"]["pose"] == {
        "name": CARD["name"], "version": 1, "trained": True,
        "warning": answer.json()["warnings"][0], "role": "live",
    }  # fmt: skip
    assert "NOT the official RTMPose" in answer.json()["warnings"][0]


def test_live_end_to_end_ap_is_within_one_point_of_the_card(default_service, capsys):
    report = evaluate_server(COCO_VAL, default_service.http)
    card_ap = CARD["evaluation_end_to_end"]["ap"]
    with capsys.disabled():
        print(f"\nend-to-end AP through the live service {report.ap:.4f}, card {card_ap:.4f}")
    assert report.extra["served_by"] == [f"{CARD['name']} v1"]
    assert abs(report.ap - card_ap) <= 0.01


def test_keypoints_of_well_visible_people_fall_inside_their_boxes(default_service, capsys):
    """Real skeletons on real photos, for people with most keypoints labelled visible: most
    predicted keypoints lie inside the person's ground-truth box (10 % margin), which even
    random keypoints in the crop nearly do, and most labelled keypoints are found within 20 % of
    the box's longer side (PCK@0.2), which random keypoints (about 1 in 10) do not."""
    people = [
        p for p in load_instances(COCO_VAL)
        if (p.keypoints[:, 2] == 2).sum() >= 12 and (p.bbox[3] - p.bbox[1]) >= 150
    ]  # fmt: skip
    assert len(people) >= 10
    inside, hits, labelled = [], [], []
    for person in people:
        r = httpx.post(f"{default_service.http}/v1/pose", content=person.image.read_bytes(),
                       params={"score_threshold": 0.3}, timeout=120)  # fmt: skip
        persons = r.json()["persons"]
        boxes = np.array([p["bbox"] for p in persons]).reshape(-1, 4)
        gt = person.keypoints
        visible = gt[:, 2] > 0
        labelled.append(int(visible.sum()))
        if not len(boxes):
            inside.append(0)
            hits.append(0)
            continue
        best = persons[int(_iou(person.bbox, boxes).argmax())]
        pred = np.array([[k["x"], k["y"]] for k in best["keypoints"]])
        x1, y1, x2, y2 = person.bbox
        mx, my = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
        within = (pred[:, 0] >= x1 - mx) & (pred[:, 0] <= x2 + mx)
        within &= (pred[:, 1] >= y1 - my) & (pred[:, 1] <= y2 + my)
        inside.append(int(within.sum()))
        error = np.linalg.norm(pred - gt[:, :2], axis=1)[visible]
        hits.append(int((error <= 0.2 * max(x2 - x1, y2 - y1)).sum()))
    inside_share = sum(inside) / (17 * len(people))
    pck = sum(hits) / sum(labelled)
    with capsys.disabled():
        print(f"\n{len(people)} people: {inside_share:.1%} of keypoints inside their box, "
              f"PCK@0.2 {pck:.1%}")  # fmt: skip
    assert inside_share >= 0.8
    assert pck >= 0.5


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:4], boxes[:, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def test_card_records_every_experiment_tried():
    experiments = CARD["experiments"]
    assert len(experiments) >= 4
    assert {e["init"] for e in experiments} == {"RTMDet-nano backbone", "scratch"}
    assert all(e["coco_val_subset_ap"] is not None for e in experiments)
