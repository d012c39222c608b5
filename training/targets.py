"""SimCC training targets: one 1-D Gaussian per keypoint and axis (mmpose ``SimCCLabel``).

Keypoints are mapped to integer bins (rounded, split ratio 2), the Gaussians are not normalised
(peak 1), and a keypoint whose 3-sigma window lies entirely outside the input gets weight 0.
sigma (4.9, 5.66) is the RTMPose setting at 192x256 and scales with the input size.
"""

from __future__ import annotations

import numpy as np

SIGMA_AT_192x256 = (4.9, 5.66)


def simcc_sigma(input_size: tuple[int, int]) -> tuple[float, float]:
    return (SIGMA_AT_192x256[0] * input_size[0] / 192, SIGMA_AT_192x256[1] * input_size[1] / 256)


def simcc_targets(
    keypoints: np.ndarray,
    visible: np.ndarray,
    input_size: tuple[int, int],
    split_ratio: float = 2.0,
    sigma: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, 2) input-pixel keypoints, (K,) visibility -> (K, W*r), (K, H*r) targets, (K,) weights."""
    sx, sy = sigma or simcc_sigma(input_size)
    bins_x, bins_y = (
        round(input_size[0] * split_ratio),
        round(input_size[1] * split_ratio),
    )
    mu = np.around(np.asarray(keypoints, np.float32) * split_ratio).astype(np.int64)
    weights = (np.asarray(visible) > 0.5).astype(np.float32)
    radius = np.array([3 * sx, 3 * sy])
    outside = (
        (mu[:, 0] - radius[0] >= bins_x) | (mu[:, 1] - radius[1] >= bins_y)
        | (mu[:, 0] + radius[0] + 1 < 0) | (mu[:, 1] + radius[1] + 1 < 0)
    )  # fmt: skip
    weights[outside] = 0.0
    x = np.arange(bins_x, dtype=np.float32)
    y = np.arange(bins_y, dtype=np.float32)
    tx = np.exp(-((x[None] - mu[:, :1]) ** 2) / (2 * sx**2)).astype(np.float32)
    ty = np.exp(-((y[None] - mu[:, 1:]) ** 2) / (2 * sy**2)).astype(np.float32)
    tx[weights == 0] = 0.0
    ty[weights == 0] = 0.0
    return tx, ty, weights
