"""One Euro filter: exact agreement with the exponential smoother it reduces to, noise and lag behaviour,
NaN and time edge cases."""

from __future__ import annotations

import math

import numpy as np

from tracker.config import SmoothParams
from tracker.one_euro import OneEuroFilter, smoothing_factor

FPS = 30.0


def _run(params: SmoothParams, signal: np.ndarray) -> np.ndarray:
    f = OneEuroFilter(params)
    return np.array([f(x, i / FPS) for i, x in enumerate(signal)])


def test_smoothing_factor_matches_the_paper():
    # alpha = 1 / (1 + tau / Te), tau = 1 / (2 pi fc)
    assert math.isclose(smoothing_factor(1.0, 1 / 30), 1 / (1 + 30 / (2 * math.pi)))
    assert smoothing_factor(1e6, 1 / 30) > 0.999  # a huge cutoff lets the signal through
    assert smoothing_factor(1e-6, 1 / 30) < 1e-4  # a tiny one holds the previous value


def test_without_speed_term_it_is_an_exponential_smoother():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 15, 2))
    out = _run(SmoothParams(min_cutoff=2.0, beta=0.0), x)
    alpha = smoothing_factor(2.0, 1 / FPS)
    ema = x[0].copy()
    np.testing.assert_allclose(out[0], x[0])
    for i in range(1, len(x)):
        ema = ema + alpha * (x[i] - ema)
        np.testing.assert_allclose(out[i], ema, rtol=1e-12, atol=1e-12)


def test_constant_signal_passes_unchanged():
    x = np.tile(np.array([[10.0, 20.0], [30.0, 40.0]]), (20, 1, 1))
    np.testing.assert_allclose(_run(SmoothParams(), x), x)


def test_jitter_on_a_still_point_is_reduced():
    rng = np.random.default_rng(2)
    x = 100.0 + rng.normal(scale=2.0, size=(300, 15, 2))
    out = _run(SmoothParams(min_cutoff=1.0, beta=0.02), x)
    assert out[30:].std() < 0.4 * x[30:].std()


def test_speed_term_cuts_lag_on_a_moving_point():
    t = np.arange(90) / FPS
    x = (200.0 * t)[:, None, None] * np.ones((1, 1, 2))  # 200 px/s
    slow = _run(SmoothParams(min_cutoff=1.0, beta=0.0), x)
    fast = _run(SmoothParams(min_cutoff=1.0, beta=0.05), x)
    lag_slow = np.abs(x[-1] - slow[-1]).max()
    lag_fast = np.abs(x[-1] - fast[-1]).max()
    assert lag_slow > 20.0  # a plain 1 Hz low-pass trails by about v * tau = 32 px
    assert lag_fast < 0.5 * lag_slow


def test_nan_passes_through_and_restarts_that_coordinate():
    f = OneEuroFilter(SmoothParams())
    f(np.array([1.0, 1.0]), 0.0)
    f(np.array([1.0, 1.0]), 0.1)
    out = f(np.array([np.nan, 2.0]), 0.2)
    assert np.isnan(out[0]) and 1.0 < out[1] < 2.0
    out = f(np.array([50.0, 2.0]), 0.3)
    assert out[0] == 50.0  # fresh start, not dragged from the old value


def test_reset_and_repeated_or_backward_time():
    f = OneEuroFilter(SmoothParams())
    f(np.array([0.0]), 0.0)
    a = f(np.array([10.0]), 0.1)
    assert 0.0 < a[0] < 10.0
    np.testing.assert_allclose(f(np.array([99.0]), 0.1), a)  # same instant: last estimate held
    np.testing.assert_allclose(f(np.array([5.0]), 0.05), [5.0])  # time went back: start over
    f.reset()
    np.testing.assert_allclose(f(np.array([7.0]), 1.0), [7.0])
