"""How often the tracker's whole-frame detection rounds run beyond `Tracker.detection_due`'s base cadence: backing
off while nothing is tracked, and stretching the search while every track is confident and searches find nothing.

Pure functions of round counts (no clocks), so a file's rounds are the same whether it is tracked pipelined or not.
"""

from __future__ import annotations


def idle_gap(empty_rounds: int, warm: int, every: int) -> int:
    """Frames from one whole-frame round to the next while nothing is tracked, after `empty_rounds` rounds in a
    row left nothing tracked: every frame for the first `warm` of them, then a gap doubling from 2 up to `every`
    (a camera pointed at an empty room searches a few times a second, not on every frame; `every` 1: always 1)."""
    if empty_rounds < warm or every <= 1:
        return 1
    return min(every, 2 ** (empty_rounds - warm + 1))


def quiet_gap(base: int, quiet_searches: int, max_factor: int) -> int:
    """Frames from one whole-frame search to the next while every track is confident, after `quiet_searches`
    searches in a row found no new face and left every track confident: `base` (the tracker's confident
    interval) doubled for each of them beyond the first, up to `base * max_factor`."""
    if quiet_searches <= 1 or max_factor <= 1:
        return base
    return base * min(max_factor, 2 ** (quiet_searches - 1))
