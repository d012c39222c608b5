"""One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) for keypoint trajectories.

A low-pass filter whose cutoff rises with speed: still keypoints lose their jitter, fast ones
keep up. Per step, with ``Te`` the time since the previous sample (seconds):

    alpha(fc) = 1 / (1 + tau / Te),  tau = 1 / (2 pi fc)
    dx_hat = lowpass(alpha(d_cutoff), (x - x_hat_prev) / Te, dx_hat_prev)
    fc = min_cutoff + beta * |dx_hat|
    x_hat = lowpass(alpha(fc), x, x_hat_prev),  lowpass(a, x, prev) = a x + (1 - a) prev

Samples are arrays (..., D); ``|dx_hat|`` is the speed over the last axis, so a 2-D keypoint
has one cutoff for x and y (as MMDeploy's PoseTracker does). The parameters come from
``StreamOptions`` (PoseTracker's defaults), here in seconds and hertz: PoseTracker counts time
in frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    min_cutoff: float  # Hz
    beta: float  # cutoff increase per unit of speed (pixels/s)
    d_cutoff: float  # Hz, for the speed estimate


def smoothing_factor(te: float, cutoff: np.ndarray | float) -> np.ndarray:
    """alpha = 1 / (1 + tau / Te) with tau = 1 / (2 pi fc)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / te)


class OneEuroFilter:
    """Filters one trajectory; the first sample passes through unchanged."""

    def __init__(self, params: OneEuroParams) -> None:
        self.params = params
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered ``x`` at time ``t`` (seconds, later than the previous sample's)."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._dx is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        te = t - self._t
        if te <= 0:
            raise ValueError(f"time must increase: {t} after {self._t}")
        p = self.params
        a_d = smoothing_factor(te, p.d_cutoff)
        self._dx = a_d * (x - self._x) / te + (1 - a_d) * self._dx
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True)
        a = smoothing_factor(te, p.min_cutoff + p.beta * speed)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()
