"""The One-Euro filter against its definition (Casiez et al. 2012), step by step."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.app.options import StreamOptions
from service.app.video.session import one_euro_params
from service.app.video.smoothing import OneEuroFilter, OneEuroParams, smoothing_factor

DEFAULTS = one_euro_params(StreamOptions())  # what a stream gets unless it asks otherwise


def reference_one_euro(samples, times, min_cutoff, beta, d_cutoff):
    """The paper's algorithm on scalars, written out independently of the module."""

    def alpha(te, fc):
        tau = 1.0 / (2.0 * math.pi * fc)
        return 1.0 / (1.0 + tau / te)

    out = [samples[0]]
    x_hat, dx_hat = samples[0], 0.0
    for k in range(1, len(samples)):
        te = times[k] - times[k - 1]
        dx = (samples[k] - x_hat) / te
        a_d = alpha(te, d_cutoff)
        dx_hat = a_d * dx + (1 - a_d) * dx_hat
        fc = min_cutoff + beta * abs(dx_hat)
        a = alpha(te, fc)
        x_hat = a * samples[k] + (1 - a) * x_hat
        out.append(x_hat)
    return out


def test_smoothing_factor_is_the_papers_alpha():
    # tau = 1 / (2 pi fc); alpha = 1 / (1 + tau / Te)
    assert smoothing_factor(1 / 30, 1.0) == pytest.approx(1 / (1 + 30 / (2 * math.pi)))
    # Te = 1 is MMDeploy's per-frame form r / (r + 1) with r = 2 pi fc
    assert smoothing_factor(1.0, 1.0) == pytest.approx(2 * math.pi / (2 * math.pi + 1))
    assert smoothing_factor(0.01, np.array([1.0, 10.0])).tolist() == pytest.approx(
        [1 / (1 + 100 / (2 * math.pi)), 1 / (1 + 10 / (2 * math.pi))]
    )


@pytest.mark.parametrize("beta", [0.0, 0.007, 0.5])
def test_scalar_trajectory_matches_the_formula_with_irregular_timestamps(beta):
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.02, 0.06, 60))
    samples = 100 + 40 * np.sin(times * 3) + rng.normal(0, 2, 60)
    expected = reference_one_euro(samples.tolist(), times.tolist(), 1.0, beta, 1.0)
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=beta, d_cutoff=1.0))
    got = [f(np.array([x]), t)[0] for x, t in zip(samples, times, strict=True)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_points_use_their_speed_for_both_coordinates():
    """(K, 2) keypoints: fc from the norm of the 2-D velocity estimate, per keypoint."""
    rng = np.random.default_rng(2)
    kpts = rng.uniform(0, 300, (20, 17, 2))
    p = OneEuroParams(min_cutoff=1.5, beta=0.05, d_cutoff=2.0)
    f = OneEuroFilter(p)
    te = 1 / 28
    x_hat, dx_hat = kpts[0], np.zeros_like(kpts[0])
    for k in range(20):
        got = f(kpts[k], k * te)
        if k:
            a_d = 1 / (1 + 1 / (2 * math.pi * p.d_cutoff * te))
            dx_hat = a_d * (kpts[k] - x_hat) / te + (1 - a_d) * dx_hat
            fc = p.min_cutoff + p.beta * np.hypot(dx_hat[:, 0], dx_hat[:, 1])[:, None]
            a = 1 / (1 + 1 / (2 * math.pi * fc * te))
            x_hat = a * kpts[k] + (1 - a) * x_hat
        np.testing.assert_allclose(got, x_hat, rtol=1e-12)


def test_without_beta_a_step_decays_geometrically():
    """beta = 0: a fixed low-pass, so after a unit step x_hat_n = 1 - (1 - alpha)^n."""
    f = OneEuroFilter(OneEuroParams(min_cutoff=2.0, beta=0.0, d_cutoff=1.0))
    te = 0.05
    alpha = 1 / (1 + 1 / (2 * math.pi * 2.0 * te))
    assert f(np.zeros(1), 0.0)[0] == 0.0
    for n in range(1, 30):
        assert f(np.ones(1), n * te)[0] == pytest.approx(1 - (1 - alpha) ** n, rel=1e-12)


def test_first_sample_and_a_still_signal_pass_unchanged():
    f = OneEuroFilter(DEFAULTS)
    x = np.array([[12.5, 40.0], [3.0, 7.0]])
    for k in range(10):
        np.testing.assert_allclose(f(x, k / 30), x, rtol=1e-14)


def test_jitter_shrinks_and_fast_motion_lags_less_than_slow():
    rng = np.random.default_rng(3)
    te = 1 / 30
    noisy = 50 + rng.normal(0, 3, 300)
    f = OneEuroFilter(DEFAULTS)
    smoothed = np.array([f(np.array([x]), k * te)[0] for k, x in enumerate(noisy)])
    assert np.abs(np.diff(smoothed)).mean() < 0.3 * np.abs(np.diff(noisy)).mean()

    def lag(speed: float) -> float:
        g = OneEuroFilter(OneEuroParams(DEFAULTS.min_cutoff, 0.05, DEFAULTS.d_cutoff))
        for k in range(60):
            y = g(np.array([speed * k * te]), k * te)[0]
        return speed * 59 * te - y

    assert lag(1000) / 1000 < lag(10) / 10  # relative lag falls as speed raises the cutoff


def test_time_must_move_forward():
    f = OneEuroFilter(DEFAULTS)
    f(np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="time must increase"):
        f(np.ones(2), 1.0)
