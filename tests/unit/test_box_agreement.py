"""The rule that lets the fidelity test tolerate boundary decisions, and nothing more."""

from __future__ import annotations

import numpy as np

from tests.support.box_agreement import boundary_cases, iou

NMS = 0.6
A = [100.0, 100.0, 140.0, 235.0, 0.30]
# IoU(A, B) = 0.5975: a near-tie for an NMS at 0.6
B = [92.45, 137.5, 138.76, 239.08, 0.29]
C = [95.27, 147.47, 137.6, 238.59, 0.20]  # inside B (IoU 0.80): suppressed by it


def boxes(*rows) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, 5)


def test_the_fixture_boxes_sit_where_the_cases_say():
    assert abs(iou(boxes(A)[:, :4], boxes(B)[:, :4])[0, 0] - 0.5975) < 1e-3
    assert iou(boxes(B)[:, :4], boxes(C)[:, :4])[0, 0] > 0.75


def test_identical_lists_have_no_boundary_case():
    assert boundary_cases(boxes(A, B), boxes(A, B), 0.05, NMS) == []


def test_an_nms_near_tie_and_its_chain_are_tolerated_and_reported():
    cases = boundary_cases(boxes(A, B), boxes(A, C), 0.05, NMS)
    assert [(c["side"], c["reason"]) for c in cases] == [("sdk", "chain"), ("service", "nms")]


def test_a_score_at_the_threshold_is_tolerated():
    near = [10, 10, 50, 90, 0.301]
    assert boundary_cases(boxes(A, near), boxes(A), 0.3, NMS)[0]["reason"] == "score"


def test_a_real_difference_is_not():
    far = [300, 300, 350, 400, 0.5]  # overlaps nothing, scores far from any threshold
    assert "no counterpart" in boundary_cases(boxes(A, far), boxes(A), 0.05, NMS)
    moved = [100.0, 100.0, 140.0, 225.0, 0.30]  # same box, 10 px shorter: IoU 0.93
    assert "no counterpart" in boundary_cases(boxes(A), boxes(moved), 0.05, NMS)
    rescored = [*A[:4], 0.25]
    assert "no counterpart" in boundary_cases(boxes(A), boxes(rescored), 0.05, NMS)
