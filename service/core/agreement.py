"""How far two model versions' answers on the same image agree (numpy only).

Persons are paired by box IoU (greedy, highest first, at least 0.5); each pair scores COCO's
object keypoint similarity with the live version as the reference: a keypoint counts where the
live version sees it (score at least ``kpt_thr``; all keypoints when it sees none), the scale
is the reference box's area and ``k = 2 sigma`` as in pycocotools. A person only one version
found scores 0, so the mean over ``max(live, candidate)`` persons is 1.0 for identical answers
and falls with every moved keypoint and every person found or lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import area, iou_matrix

DEFAULT_SIGMA = 0.05  # a keypoint set without OKS sigmas (face-106)
MIN_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    oks: float  # mean over persons, 1.0 when neither version found anyone
    person_diff: int  # |live persons - candidate persons|


def keypoint_oks(
    ref_kpts: np.ndarray, ref_box: np.ndarray, kpts: np.ndarray, sigmas: np.ndarray, kpt_thr: float
) -> float:
    ref_kpts, kpts = np.asarray(ref_kpts, np.float64), np.asarray(kpts, np.float64)
    seen = ref_kpts[:, 2] >= kpt_thr
    if not seen.any():
        seen[:] = True
    scale2 = max(float(area(ref_box)[0]), 1.0)
    k2 = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    d2 = np.sum((ref_kpts[:, :2] - kpts[:, :2]) ** 2, axis=1)
    return float(np.mean(np.exp(-d2 / (2.0 * scale2 * k2))[seen]))


def agreement(
    live_boxes: np.ndarray,
    live_kpts: np.ndarray,
    cand_boxes: np.ndarray,
    cand_kpts: np.ndarray,
    sigmas: np.ndarray | None,
    kpt_thr: float = 0.3,
) -> Agreement:
    n, m = len(live_boxes), len(cand_boxes)
    if n == 0 and m == 0:
        return Agreement(1.0, 0)
    k = live_kpts.shape[1] if n else cand_kpts.shape[1]
    sig = np.full(k, DEFAULT_SIGMA) if sigmas is None or len(sigmas) != k else np.asarray(sigmas)
    ious = iou_matrix(live_boxes, cand_boxes) if n and m else np.zeros((n, m))
    total, used_live, used_cand = 0.0, set(), set()
    for flat in np.argsort(-ious, axis=None):
        i, j = divmod(int(flat), m)
        if ious[i, j] < MIN_IOU:
            break
        if i in used_live or j in used_cand:
            continue
        used_live.add(i)
        used_cand.add(j)
        total += keypoint_oks(live_kpts[i], live_boxes[i], cand_kpts[j], sig, kpt_thr)
    return Agreement(total / max(n, m), abs(n - m))
