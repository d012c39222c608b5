"""SimCC decoding (mmpose ``get_simcc_maximum`` / MMDeploy ``SimCCLabelDecode``).

Argmax on each axis without softmax; score = min of the two maxima; location -1 where the
score is <= 0 (before dividing by the split ratio, as both official implementations do);
then crop coordinates -> image coordinates with the aspect-fixed scale.
"""

from __future__ import annotations

import numpy as np


def simcc_maximum(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, Wx), (N, K, Wy) -> locations (N, K, 2) in bins and scores (N, K)."""
    x_idx = np.argmax(simcc_x, axis=2)
    y_idx = np.argmax(simcc_y, axis=2)
    max_x = np.take_along_axis(simcc_x, x_idx[..., None], axis=2)[..., 0]
    max_y = np.take_along_axis(simcc_y, y_idx[..., None], axis=2)[..., 0]
    scores = np.minimum(max_x, max_y).astype(np.float32)
    locs = np.stack([x_idx, y_idx], axis=-1).astype(np.float32)
    locs[scores <= 0] = -1
    return locs, scores


def decode(
    simcc_x: np.ndarray,
    simcc_y: np.ndarray,
    centers: np.ndarray,
    scales: np.ndarray,
    input_size: tuple[int, int],
    split_ratio: float = 2.0,
) -> np.ndarray:
    """Model outputs + crop geometry -> keypoints (N, K, 3) as image x, y, score."""
    locs, scores = simcc_maximum(np.asarray(simcc_x, np.float32), np.asarray(simcc_y, np.float32))
    kpts = locs / np.float32(split_ratio)
    size = np.asarray(input_size, np.float32)
    s = np.asarray(scales, np.float32)[:, None, :]
    c = np.asarray(centers, np.float32)[:, None, :]
    kpts = kpts * s / size + c - s * np.float32(0.5)
    return np.concatenate([kpts, scores[..., None]], axis=-1).astype(np.float32)
