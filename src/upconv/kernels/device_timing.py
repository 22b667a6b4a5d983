"""Timing on a CUDA device with CUDA events (the GPU's own clock, not the host's).

Each timed call is bracketed by two events recorded on the current stream; the elapsed time
between them is what the GPU spent from the first to the second, including any gap while it
waited for the host to launch the call (so a call's host overhead counts when it exceeds its
GPU time, as it does for the caller).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch


def cuda_times(fn: Callable[[], object], reps: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
    torch.cuda.synchronize()
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1e3 for start, end in events]


def cuda_median(fn: Callable[[], object], min_reps: int = 5, max_reps: int = 50,
                budget_s: float = 0.02, warmup: int = 1) -> float:
    """Median seconds per call: at least ``min_reps`` calls, more (up to ``max_reps``) while
    they fit in ``budget_s`` of device time (judged from the first ``min_reps``)."""
    first = cuda_times(fn, min_reps, warmup)
    per_call = statistics.median(first)
    more = min(max_reps - min_reps, int(budget_s / max(per_call, 1e-7)) - min_reps)
    times = first + (cuda_times(fn, more, 0) if more > 0 else [])
    return statistics.median(times)

