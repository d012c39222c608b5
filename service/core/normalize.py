"""Turn uint8 HWC BGR images into normalised float32 NCHW model input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_input_tensor(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float], to_rgb: bool
) -> np.ndarray:
    """(N, H, W, 3) or (H, W, 3) uint8 BGR -> (N, 3, H, W) float32, as MMDeploy's Normalize."""
    batch = images[None] if images.ndim == 3 else images
    x = batch.astype(np.float32)
    if to_rgb:
        x = x[..., ::-1]
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
