"""Do two detectors' box lists agree, up to decisions taken at a boundary?

Two builds of onnxruntime (the MMDeploy SDK bundles 1.15.1) or two CPUs can decide a score
threshold or an NMS suppression differently when the compared quantity sits within the last
bits of float arithmetic of the threshold. Agreement must be exact everywhere else.
"""

from __future__ import annotations

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


# A decision is at a boundary when the quantity it compares lies within this of the threshold:
# two builds of onnxruntime (the SDK bundles 1.15.1) may decide it differently.
EPS_SCORE = 2e-3
EPS_IOU = 0.01
SAME_BOX_IOU, SAME_SCORE = 0.99, 1e-3


def boundary_cases(
    ours: np.ndarray, theirs: np.ndarray, threshold: float, nms_iou: float
) -> list[dict] | str:
    """Match boxes one to one (IoU >= 0.99, same score); every box left over must be explained
    by a decision boundary, else the reason it is not is returned.

    A box present on one side only is a boundary case when
    - ``score``: its score is within EPS_SCORE of the threshold applied, or
    - ``nms``: its IoU with a box of at least its score (either side) is within EPS_IOU of the
      NMS threshold, so one build suppressed it and the other kept it, or
    - ``chain``: it overlaps (IoU > nms_iou - EPS_IOU) a box of at least its score that exists
      on the other side only because of a boundary case: suppressed there, kept here.
    """
    sides = {"service": ours, "sdk": theirs}
    overlap = iou(ours[:, :4], theirs[:, :4]) if len(ours) and len(theirs) else np.zeros((0, 0))
    matched = {"service": set(), "sdk": set()}
    for i, j in sorted(np.argwhere(overlap >= SAME_BOX_IOU), key=lambda p: -overlap[p[0], p[1]]):
        if i in matched["service"] or j in matched["sdk"]:
            continue
        if abs(ours[i, 4] - theirs[j, 4]) <= SAME_SCORE:
            matched["service"].add(i)
            matched["sdk"].add(j)
    everything = np.concatenate([ours, theirs]).reshape(-1, 5)
    pending = {(s, k) for s, boxes in sides.items() for k in range(len(boxes))} - {
        (s, k) for s in sides for k in matched[s]
    }
    explained: dict[tuple[str, int], str] = {}
    progress = True
    while progress:
        progress = False
        for side, k in sorted(pending - explained.keys()):
            box = sides[side][k]
            ious = iou(box[None, :4], everything[:, :4])[0]
            stronger = everything[:, 4] >= box[4] - EPS_SCORE
            other = "sdk" if side == "service" else "service"
            chained = [
                m
                for (s, m), _ in explained.items()
                if s == other and sides[s][m][4] >= box[4] - EPS_SCORE
            ]
            if abs(box[4] - threshold) <= EPS_SCORE:
                explained[(side, k)] = "score"
            elif np.any(stronger & (np.abs(ious - nms_iou) <= EPS_IOU) & (ious < SAME_BOX_IOU)):
                explained[(side, k)] = "nms"
            elif any(
                iou(box[None, :4], sides[other][m][None, :4])[0, 0] > nms_iou - EPS_IOU
                for m in chained
            ):
                explained[(side, k)] = "chain"
            else:
                continue
            progress = True
    unexplained = pending - explained.keys()
    if unexplained:
        side, k = min(unexplained)
        box = sides[side][k]
        return (
            f"{side} box {np.round(box, 3).tolist()} has no counterpart "
            f"(IoU >= {SAME_BOX_IOU}) and sits at no decision boundary"
        )
    return [
        {"side": s, "box": [round(float(v), 3) for v in sides[s][k]], "reason": why}
        for (s, k), why in sorted(explained.items())
    ]
