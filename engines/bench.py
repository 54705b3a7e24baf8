"""Throughput harness shared by `fkd-track bench` and the engines benchmarks: faces/s and p50/p99 latency.

Batches are built from real face crops; warm-up calls are excluded and GPU work is synchronised per call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.backend import Backend

BATCH_SIZES = (1, 8, 64, 256)


@dataclass(frozen=True)
class BenchRow:
    """One backend at one batch size."""

    backend: str
    batch: int
    faces_per_s: float
    p50_ms: float  # per-call latency of a whole batch
    p99_ms: float
    calls: int


def bench_backend(
    backend: Backend,
    crops: np.ndarray,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seconds: float = 2.0,
    min_calls: int = 5,
    max_calls: int = 10_000,
    warmup: int = 3,
) -> list[BenchRow]:
    """Time backend.predict on batches cycled from `crops` (N, S, S) uint8 for each batch size.

    Each size gets `warmup` untimed calls, then timed calls until `seconds` have passed and at least
    `min_calls` were made (at most `max_calls`). faces/s = batch * calls / total timed seconds.
    """
    crops = np.asarray(crops)
    if crops.ndim != 3 or len(crops) == 0:
        raise ValueError(f"need a non-empty (N, S, S) stack of crops, got {crops.shape}")
    sync = getattr(backend, "synchronize", None) or (lambda: None)
    rows = []
    for batch in batch_sizes:
        x = crops[np.arange(batch) % len(crops)]
        for _ in range(warmup):
            backend.predict(x)
        sync()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - start < seconds):
            t0 = time.perf_counter()
            backend.predict(x)
            sync()
            times.append(time.perf_counter() - t0)
        ms = np.array(times) * 1e3
        rows.append(BenchRow(backend.name, batch, batch * len(times) / float(np.sum(times)),
                             float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(times)))
    return rows


def format_rows(rows: Sequence[BenchRow]) -> str:
    """A plain-text table of bench rows."""
    lines = [f"{'backend':<18}{'batch':>6}{'faces/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'calls':>7}"]
    for r in rows:
        lines.append(f"{r.backend:<18}{r.batch:>6}{r.faces_per_s:>12.1f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.calls:>7}")
    return "\n".join(lines)
