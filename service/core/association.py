"""Which detections continue which tracks, and which tracks the detector missed.

One implementation for the video session's tracker and the Triton pipeline model: on a
detection frame the pipeline decides which tracks the detector missed and estimates their
poses in the same call, and the tracker reads that decision back.

A track is described by ``TRACK_COLUMNS``: where its keypoints put it now (``box``), its
latest detection's score and box, and whether it was seen in the previous frame.
"""

from __future__ import annotations

import numpy as np

from .boxes import greedy_assignment, iou_matrix

TRACK_COLUMNS = 10  # x1, y1, x2, y2 (predicted), score, x1, y1, x2, y2 (last detected), visible


def track_table(
    predicted: np.ndarray, scores: np.ndarray, last_seen: np.ndarray, visible: np.ndarray
) -> np.ndarray:
    """(T, TRACK_COLUMNS) float32."""
    t = len(scores)
    return np.concatenate(
        [
            np.asarray(predicted, np.float32).reshape(t, 4),
            np.asarray(scores, np.float32).reshape(t, 1),
            np.asarray(last_seen, np.float32).reshape(t, 4),
            np.asarray(visible, np.float32).reshape(t, 1),
        ],
        axis=1,
    )


def associate(
    detections: np.ndarray, tracks: np.ndarray, iou_thr: float, nms_thr: float
) -> tuple[np.ndarray, np.ndarray]:
    """(owner, continued): per detection the index of the track it joins (-1: none), and the
    visible tracks that continue without a detection.

    Detections join tracks greedily, most overlapping pairs first down to ``iou_thr``, by the
    better of the IoU with where the track's keypoints put it and with its last detection.
    A visible track left without a detection continues from its keypoints unless its box
    duplicates a detection (IoU > ``nms_thr``).
    """
    dets = np.asarray(detections, np.float64).reshape(-1, 5)
    tracks = np.asarray(tracks, np.float64).reshape(-1, TRACK_COLUMNS)
    predicted, last_seen, visible = tracks[:, :4], tracks[:, 5:9], tracks[:, 9] > 0
    similarity = np.maximum(iou_matrix(dets, predicted), iou_matrix(dets, last_seen))
    owner = np.full(len(dets), -1, np.int32)
    rows, cols = np.ones(len(dets), bool), np.ones(len(tracks), bool)
    for i, j in greedy_assignment(similarity, iou_thr, rows, cols):
        owner[i] = j
    duplicate = (iou_matrix(predicted, dets) > nms_thr).any(axis=1)
    continued = [
        j for j in range(len(tracks)) if visible[j] and j not in owner and not duplicate[j]
    ]
    return owner, np.asarray(continued, np.int32)
