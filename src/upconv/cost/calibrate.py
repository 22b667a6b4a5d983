"""Measure this machine for a hardware profile: sgemm throughput, copy bandwidth, cache size.

Only time-related fields are measured. Energies cannot be measured from Python; they are
kept from a base profile (Horowitz 45 nm by default) and the written file says so.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from .profiles import HardwareProfile


def wall_times(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall times in seconds of ``repeats`` calls of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    return statistics.median(wall_times(fn, repeats, warmup))


@contextmanager
def torch_threads(threads: int | None):
    """Run with ``torch.set_num_threads(threads)`` (None: leave it), restoring it after."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def sgemm_macs_per_second(n: int = 1024, repeats: int = 5) -> float:
    """float32 ``n×n @ n×n`` throughput: n³ MACs over the median time."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    return n**3 / median_seconds(lambda: torch.mm(a, b, out=out), repeats)


def copy_bytes_per_second(nbytes: int, repeats: int = 5) -> float:
    """``dst.copy_(src)`` of ``nbytes`` float32 bytes: bytes read + written over median time."""
    import torch

    n = max(1, nbytes // 4)
    src, dst = torch.randn(n), torch.empty(n)
    return 2 * 4 * n / median_seconds(lambda: dst.copy_(src), repeats)


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache of cpu0 from Linux sysfs, or None where that is not available."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    sizes = []
    for index in root.glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
            kind = (index / "type").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction" or not text:
            continue
        factor = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KMG")) * factor)
    return max(sizes) if sizes else None


def calibrate_profile(name: str, base: HardwareProfile, *, threads: int | None = 1,
                      quick: bool = False) -> tuple[HardwareProfile, str]:
    """Measure and return ``(profile, notes)``; ``notes`` says what was measured and how."""
    repeats = 3 if quick else 7
    with torch_threads(threads) as used:
        macs = sgemm_macs_per_second(384 if quick else 1024, repeats)
        cache = last_level_cache_bytes()
        capacity = cache if cache is not None else base.onchip_capacity_bytes
        big = max(32 * 1024**2, 2 * capacity) if quick else max(64 * 1024**2, 8 * capacity)
        offchip = copy_bytes_per_second(big, repeats)
        onchip = copy_bytes_per_second(max(4096, capacity // 8), repeats * 5)
    notes = (
        f"calibrated on {platform.node() or 'this machine'} ({platform.machine()}, "
        f"{platform.processor() or 'cpu'}), {used} torch thread(s)\n"
        f"float32 sgemm: {macs / 1e9:.2f} GMAC/s (float16 and int8 rates are NOT measured: "
        "set to the float32 rate)\n"
        f"copy bandwidth: off chip {offchip / 1e9:.2f} GB/s (buffer {big >> 20} MiB), on chip "
        f"{onchip / 1e9:.2f} GB/s (buffer 1/8 of the cache)\n"
        f"on-chip capacity: {capacity} bytes ("
        + ("last-level cache from sysfs" if cache is not None else "not found; kept from base")
        + f")\nenergies are NOT measured: kept from profile {base.name!r}"
    )
    profile = replace(
        base, name=name, default_dtype="float32",
        description=f"measured on this machine ({used} thread(s)); energies from {base.name}",
        peak_macs_per_second={d: macs for d in base.peak_macs_per_second} | {"float32": macs},
        mac_pj=dict(base.mac_pj), onchip_capacity_bytes=int(capacity),
        offchip_bytes_per_second=offchip, onchip_bytes_per_second=onchip, source="",
    )
    return profile, notes
