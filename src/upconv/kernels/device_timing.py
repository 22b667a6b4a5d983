"""Timing on a CUDA device with CUDA events (the GPU's own clock), the host clock on a CPU.

* :meth:`DeviceClock.interleaved` — per-call device time: every timed call is bracketed by
  two CUDA events after a 256 MiB buffer is zeroed (the L2 cache, 50–60 MiB on H100/H200,
  then holds none of the call's data), round-robin over the functions so drifts of clocks and
  temperature spread over all of them. Between the zeroing and the first event the GPU then
  spins for :data:`LEAD_CYCLES` clock cycles (``torch.cuda._sleep``, about a millisecond)
  while the host launches the call, so this is device time without host overhead: what a
  call costs in a pipeline whose host runs ahead of the GPU. (Without that lead, a call
  whose host side outlasted the zeroing, ~0.1 ms, was charged the difference: on an H200
  the same Triton kernel measured 0.03 ms called directly and 0.17 ms through ``auto``.)
  The GPU suite, ``auto`` and the Triton kernel's tuner all time this way.
* :meth:`DeviceClock.back_to_back` — ``calls`` consecutive calls between two events, no
  flush: throughput with a warm L2 and the host's launch overhead included whenever it
  exceeds the device time (small layers).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

#: Bytes zeroed before each timed call (well above the L2 of current data-centre GPUs).
FLUSH_BYTES = 256 * 2**20


#: GPU clock cycles the device spins before each timed call's first event: a lead over the
#: host, which launches the call meanwhile (2e6 cycles: ~1 ms at 2 GHz).
LEAD_CYCLES = 2_000_000

_FLUSH: dict[torch.device, torch.Tensor] = {}


def _flush_buffer(device: torch.device) -> torch.Tensor:
    if device not in _FLUSH:
        _FLUSH[device] = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device=device)
    return _FLUSH[device]


class DeviceClock:
    """Seconds of calls on ``device`` (CUDA events; ``perf_counter`` on a CPU)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._flush = _flush_buffer(self.device) if self.cuda else None

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def flush(self) -> None:
        if self._flush is not None:
            self._flush.zero_()

    def lead(self) -> None:
        """Keep the GPU busy for :data:`LEAD_CYCLES` so that the host's next launches are
        queued before the device reaches them."""
        if self.cuda:
            torch.cuda._sleep(LEAD_CYCLES)

    def interleaved(self, fns: dict[str, Callable[[], object]], repeats: int,
                    warmup: int = 3) -> dict[str, list[float]]:
        """Seconds of each timed call of each function, round-robin after ``warmup`` calls
        each (each round starts at a different function)."""
        names = list(fns)
        with torch.no_grad():
            for _ in range(warmup):
                for name in names:
                    fns[name]()
            self.sync()
            times: dict[str, list[float]] = {name: [] for name in names}
            for i in range(repeats):
                pending = []
                for name in names[i % len(names):] + names[: i % len(names)]:
                    self.flush()
                    self.lead()
                    pending.append((name, *self._timed(fns[name])))
                self.sync()
                for name, start, end in pending:
                    times[name].append(self._elapsed(start, end))
        return times

    def back_to_back(self, fn: Callable[[], object], calls: int) -> float:
        """Seconds per call of ``calls`` consecutive calls (warm caches, host overhead in)."""
        with torch.no_grad():
            fn()
            self.sync()
            start, end = self._timed(lambda: [fn() for _ in range(calls)])
            self.sync()
        return self._elapsed(start, end) / calls

    def _timed(self, fn: Callable[[], object]) -> tuple[object, object]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                enable_timing=True)
            start.record()
            fn()
            end.record()
            return start, end
        t0 = time.perf_counter()
        fn()
        return t0, time.perf_counter()

    def _elapsed(self, start: object, end: object) -> float:
        if self.cuda:
            return start.elapsed_time(end) / 1e3  # type: ignore[attr-defined]
        return end - start  # type: ignore[operator]

    def copy_bandwidth(self, megabytes: int = 1024, reps: int = 10) -> float:
        """Best copy bandwidth (bytes read + written per second) of ``Tensor.copy_``."""
        n = megabytes * 2**20 // 4
        src = torch.empty(n, device=self.device).uniform_()
        dst = torch.empty_like(src)
        times = self.interleaved({"copy": lambda: dst.copy_(src)}, reps, warmup=2)["copy"]
        return 2 * 4 * n / min(times)

    def median(self, fn: Callable[[], object], reps: int = 15, warmup: int = 1) -> float:
        """Median seconds per call of ``fn`` (:meth:`interleaved` with one function)."""
        return statistics.median(self.interleaved({"fn": fn}, reps, warmup)["fn"])
