"""Measurements: interleaved timing, the machine's roofline, and bytes allocated per call."""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np
import torch

K = TypeVar("K", bound=Hashable)


def interleaved_times(fns: dict[K, Callable[[], object]], repeats: int, warmup: int = 2,
                      gap_s: float = 0.0, settle_s: dict[K, float] | None = None,
                      before: Callable[[], object] | None = None, seed: int = 0
                      ) -> dict[K, list[float]]:
    """Seconds per call of every function, measured in rounds after ``warmup`` calls each.

    Each round runs every function once, in an order of its own (a seeded shuffle: the same
    run to run), so slow drifts of the machine (other load, clocks) spread over all of them,
    and no function always follows the same neighbour. (A fixed cyclic order did: the case
    after an ONNX Runtime case started every timed call after that case's idle time, with
    cold caches, which cost a small layer's Python path ~0.3 ms in every round.) ``gap_s``
    of idle time before each timed call lets the previous library's spin-waiting worker
    threads (OpenMP, ONNX Runtime) go to sleep, so no case pays for its predecessor's pool;
    ``settle_s[name]`` lengthens that idle time after ``name`` (ONNX Runtime's workers spin
    for longer than PyTorch's). ``before`` (untimed) runs right before every timed call, after
    the idle time: e.g. the PyTorch convolution that precedes the upsampler in a network, so
    each call starts as it would in a model, PyTorch's OpenMP workers still spinning.
    ``seed`` seeds the rounds' orders.
    """
    names = list(fns)
    settle = settle_s or {}
    with torch.no_grad():
        for _ in range(warmup):
            for name in names:
                fns[name]()
        times: dict[K, list[float]] = {name: [] for name in names}
        previous = None
        order = random.Random(seed)
        for _ in range(repeats):
            for name in order.sample(names, len(names)):
                idle = max(gap_s, settle.get(previous, 0.0)) if previous is not None else gap_s
                if idle:
                    time.sleep(idle)
                if before is not None:
                    before()
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
                previous = name
    return times


def median(values: list[float]) -> float:
    return float(np.median(values))


def paired_ratio(base: list[float], new: list[float], confidence: float = 0.95
                 ) -> tuple[float, float | None, float | None]:
    """Speed-up of ``new`` over ``base`` from times measured in the same rounds:
    ``(median, low, high)`` of the per-round ratios ``base[i] / new[i]``.

    Pairing takes each ratio from two calls made moments apart, so the machine's slow drifts
    (other load, memory state) cancel instead of widening the spread. ``low``–``high`` is a
    distribution-free ``confidence`` interval for that median (order statistics,
    ``scipy.stats.quantile_test``); None where there are too few rounds for one.
    """
    if len(base) != len(new) or not base:
        raise ValueError(f"paired times need equal, non-empty lists, got {len(base)} and "
                         f"{len(new)}")
    from scipy.stats import quantile_test

    ratios = np.asarray(base, dtype=float) / np.asarray(new, dtype=float)
    mid = float(np.median(ratios))
    ci = quantile_test(ratios, q=mid, p=0.5).confidence_interval(confidence)
    low, high = float(ci.low), float(ci.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        return mid, None, None
    return mid, low, high


def pooled_paired_ratio(groups: list[tuple[list[float], list[float]]],
                        confidence: float = 0.95, resamples: int = 4000, seed: int = 0
                        ) -> tuple[float, float | None, float | None, list[float]]:
    """:func:`paired_ratio` over rounds measured in several processes: ``groups`` holds one
    ``(base, new)`` pair of time lists per process. Returns ``(median, low, high,
    per-process medians)``: the median of all the processes' per-round ratios, and a
    ``confidence`` interval for it from a two-stage (cluster) bootstrap, processes drawn with
    replacement and then rounds within each, since rounds of one process share that process's
    state (its memory layout, which buffers page-fault) and are not independent draws. With a
    single process, :func:`paired_ratio`'s order-statistics interval.
    """
    if not groups:
        raise ValueError("pooled_paired_ratio needs at least one process's rounds")
    ratios = []
    for base, new in groups:
        if len(base) != len(new) or not base:
            raise ValueError(f"paired times need equal, non-empty lists, got {len(base)} and "
                             f"{len(new)}")
        ratios.append(np.asarray(base, dtype=float) / np.asarray(new, dtype=float))
    per_process = [float(np.median(r)) for r in ratios]
    if len(groups) == 1:
        mid, low, high = paired_ratio(*groups[0], confidence=confidence)
        return mid, low, high, per_process
    mid = float(np.median(np.concatenate(ratios)))
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for i in range(resamples):
        picked = rng.integers(len(ratios), size=len(ratios))
        stats[i] = np.median(np.concatenate(
            [rng.choice(ratios[k], size=len(ratios[k])) for k in picked]))
    tail = (1 - confidence) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return mid, float(low), float(high), per_process


def peak_sgemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best float32 GEMM rate (GFLOP/s) of ``torch.mm`` on ``threads`` threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    with _threads(threads):
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def copy_bandwidth_gbs(threads: int, megabytes: int = 256, repeats: int = 5) -> float:
    """Best copy bandwidth (GB/s, bytes read + written) of ``Tensor.copy_`` on ``threads``."""
    n = megabytes * 2**20 // 4
    src, dst = torch.randn(n), torch.empty(n)
    with _threads(threads):
        dst.copy_(src)
        best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * 4 * n / best / 1e9


def allocated_bytes(fn: Callable[[], object]) -> int:
    """Bytes allocated during ``fn()``: PyTorch's allocator plus the Python heap's peak.

    PyTorch allocations come from the profiler (``profile_memory``), numpy and Python objects
    from ``tracemalloc`` in a second call (so the profiler's own objects do not count); the
    output is included. Memory taken outside both (ONNX Runtime's
    arena, numba's runtime) is invisible here, so ONNX Runtime cases are not measured.
    """
    import tracemalloc

    from torch.profiler import ProfilerActivity, profile

    # two calls: the profiler's own Python objects would otherwise count as the call's heap
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        with torch.no_grad():
            fn()
        python_heap = tracemalloc.get_traced_memory()[1] - base
    finally:
        if started:
            tracemalloc.stop()
    # self usage: an op that calls others (the upconv operator) would count theirs again
    torch_bytes = sum(e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0)
    return int(torch_bytes + max(0, python_heap))


def machine_info(threads: int) -> dict[str, object]:
    """What the numbers depend on: CPU, core counts, library versions, threads used."""
    import numba
    import onnxruntime

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    from .. import __version__
    from ..kernels._simd import LANES

    return {
        "cpu": cpu, "machine": platform.machine(), "logical_cpus": os.cpu_count(),
        "threads": threads, "simd_lanes_f32": LANES, "python": platform.python_version(),
        "torch": torch.__version__, "numba": numba.__version__,
        "onnxruntime": onnxruntime.__version__, "upconv": __version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "omp_env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                               "KMP_BLOCKTIME", "OMP_NUM_THREADS",
                                               "NUMBA_THREADING_LAYER") if k in os.environ},
        "parallel_backend": _parallel_backend(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _parallel_backend() -> str:
    from ..kernels import parallel

    return parallel.backend()


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class _threads:
    """Temporarily set ``torch.set_num_threads``."""

    def __init__(self, n: int) -> None:
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)
