"""Box and keypoint arithmetic for tracking (numpy only): IoU, OKS, keypoints -> box, matching.

Conventions follow MMDeploy's PoseTracker (``csrc/mmdeploy/codebase/mmpose/pose_tracker``):
boxes are ``[x1, y1, x2, y2]`` in pixels; a keypoint is visible when its score reaches the
threshold; OKS uses the box diagonal as the object scale.
"""

from __future__ import annotations

import math

import numpy as np


def _boxes(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x.reshape(-1, x.shape[-1])[:, :4] if x.size else np.zeros((0, 4))


def area(boxes: np.ndarray) -> np.ndarray:
    boxes = _boxes(boxes)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of every box of ``a`` (N, 4+) with every box of ``b`` (M, 4+); 0 for empty."""
    a, b = _boxes(a), _boxes(b)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def oks(
    kpts_a: np.ndarray, box_a: np.ndarray, kpts_b: np.ndarray, box_b: np.ndarray, sigmas: np.ndarray
) -> float:
    """Symmetric object keypoint similarity of two poses (K, 2+), as PoseTracker's pose NMS.

    Scale is the mean diagonal of the two boxes; each keypoint contributes
    ``exp(-d^2 / (2 s^2 k^2))`` with ``k`` its sigma; the result is the mean over keypoints.
    """

    def diagonal(box: np.ndarray) -> float:
        return math.hypot(float(box[2] - box[0]), float(box[3] - box[1]))

    s = 0.5 * (diagonal(box_a) + diagonal(box_b))
    if s <= 0:
        return 0.0
    d2 = np.sum((np.asarray(kpts_a)[:, :2] - np.asarray(kpts_b)[:, :2]) ** 2, axis=1)
    k = np.asarray(sigmas, np.float64)
    return float(np.mean(np.exp(-d2 / (2.0 * s * s * k * k))))


def min_visible(num_keypoints: int, min_keypoints: int | None) -> int:
    """PoseTracker's default: half the keypoints, rounded up."""
    return (num_keypoints + 1) // 2 if min_keypoints is None else min_keypoints


def visible_count(keypoints: np.ndarray, kpt_thr: float) -> int:
    return int(np.count_nonzero(np.asarray(keypoints)[:, 2] >= kpt_thr))


def keypoints_to_box(
    keypoints: np.ndarray,
    kpt_thr: float,
    min_keypoints: int | None,
    scale: float,
    width: float,
    height: float,
) -> np.ndarray | None:
    """The box a pose implies for the next frame, or None when too few keypoints are visible.

    The extent of the visible keypoints, expanded ``scale`` times about its centre and clipped
    to the image (PoseTracker's ``keypoints_to_bbox``); a box without area is no box.
    """
    keypoints = np.asarray(keypoints, np.float64)
    visible = keypoints[keypoints[:, 2] >= kpt_thr, :2]
    if len(visible) < max(1, min_visible(len(keypoints), min_keypoints)):
        return None
    (x1, y1), (x2, y2) = visible.min(axis=0), visible.max(axis=0)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * scale, (y2 - y1) * scale
    box = np.array(
        [
            min(max(cx - w / 2, 0.0), width),
            min(max(cy - h / 2, 0.0), height),
            min(max(cx + w / 2, 0.0), width),
            min(max(cy + h / 2, 0.0), height),
        ]
    )
    return box if box[2] - box[0] >= 1 and box[3] - box[1] >= 1 else None


def greedy_assignment(
    similarity: np.ndarray, threshold: float, rows: np.ndarray, cols: np.ndarray
) -> list[tuple[int, int]]:
    """Repeatedly pair the most similar free row and column while similarity >= threshold.

    ``rows``/``cols`` are boolean masks of who may still be paired; they are updated in place,
    so a second round (e.g. missing tracks after visible ones) continues where this one stopped.
    """
    pairs: list[tuple[int, int]] = []
    if similarity.size == 0:
        return pairs
    sim = np.where(rows[:, None] & cols[None, :], similarity, -np.inf)
    while True:
        i, j = np.unravel_index(int(np.argmax(sim)), sim.shape)
        if not sim[i, j] >= threshold:  # also stops on -inf (nothing left)
            return pairs
        pairs.append((int(i), int(j)))
        rows[i] = cols[j] = False
        sim[i, :] = -np.inf
        sim[:, j] = -np.inf
