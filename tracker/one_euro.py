"""The One Euro filter (Casiez, Roussel & Vogel, CHI 2012) applied to every coordinate of an array.

A low-pass filter whose cutoff rises with the signal's speed: steady points when still, little lag in motion.
"""

from __future__ import annotations

import math

import numpy as np

from tracker.config import SmoothParams


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """alpha = 1 / (1 + tau / dt) with tau = 1 / (2 pi cutoff): the exponential smoothing weight."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters arrays of a fixed shape (e.g. (K, 2) keypoints), each element independently.

    `__call__(x, t)` takes the new raw values and their time in seconds and returns the filtered values.
    NaN inputs pass through as NaN and restart that element's filter; `reset()` forgets all history.
    """

    def __init__(self, params: SmoothParams) -> None:
        self.params = params
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        p = self.params
        if self._x is None or self._t is None or self._x.shape != x.shape or t < self._t:
            # first sample, or time went backwards: nothing to filter against
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        if t == self._t:  # the same instant again: keep the last estimate
            return self._x.copy()
        dt = t - self._t
        fresh = ~np.isfinite(self._x)  # elements whose history was NaN start over
        dx = (x - self._x) / dt
        dx[fresh] = 0.0
        dx_hat = self._dx + smoothing_factor(p.d_cutoff, dt) * (dx - self._dx)
        cutoff = p.min_cutoff + p.beta * np.abs(dx_hat)
        x_hat = self._x + smoothing_factor(cutoff, dt) * (x - self._x)
        x_hat[fresh] = x[fresh]
        bad = ~np.isfinite(x)
        dx_hat[bad] = 0.0
        self._x, self._dx, self._t = x_hat, dx_hat, t
        return x_hat.copy()
