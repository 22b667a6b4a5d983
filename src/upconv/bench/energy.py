"""Measured energy per call on an NVIDIA GPU: NVML's total-energy counter around many calls.

``nvmlDeviceGetTotalEnergyConsumption`` counts millijoules since the driver loaded, for the
whole board (idle and static power included) and updates a few times a second at most, so a
reading brackets at least ``min_seconds`` of back-to-back calls: ``µJ per call = ΔmJ · 1000 /
calls``. The same over an idle interval gives the board's idle power; ``above idle`` subtracts
it (``ΔmJ − P_idle · Δt``), the energy the calls themselves add.

``pynvml`` (the ``nvidia-ml-py`` package) is imported only when a counter is opened;
:func:`nvml_unavailable_reason` says why one cannot be (not installed, no NVIDIA driver,
counter not supported), and the suite reports that instead of numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class EnergyCounter(Protocol):
    def millijoules(self) -> float:
        """The counter's current value in millijoules (monotonic)."""


@dataclass(frozen=True)
class EnergyReading:
    """``calls`` calls over ``seconds``: counter difference and what it means per call."""

    calls: int
    seconds: float
    millijoules: float
    idle_watts: float | None = None

    @property
    def uj_per_call(self) -> float:
        return self.millijoules * 1e3 / self.calls

    @property
    def watts(self) -> float:
        return self.millijoules / 1e3 / self.seconds

    @property
    def uj_per_call_above_idle(self) -> float | None:
        if self.idle_watts is None:
            return None
        return (self.millijoules - self.idle_watts * self.seconds * 1e3) * 1e3 / self.calls


def measure_energy(fn: Callable[[], object], counter: EnergyCounter, sync: Callable[[], None],
                   min_seconds: float = 1.0, idle_watts: float | None = None,
                   clock: Callable[[], float] = time.perf_counter,
                   batch: int | None = None) -> EnergyReading:
    """Run ``fn`` back to back for at least ``min_seconds`` between two counter readings.

    Calls go in batches (``sync()`` after each, so the device has finished what the clock
    counts); the batch size is sized from one timed batch unless given. One warm-up batch
    runs before the first reading.
    """
    if batch is None:
        sync()
        t0 = clock()
        fn()
        sync()
        one = max(clock() - t0, 1e-6)
        batch = max(1, min(10_000, int(0.05 / one)))
    for _ in range(batch):
        fn()
    sync()
    start_mj, t0 = counter.millijoules(), clock()
    calls = 0
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        sync()
        if clock() - t0 >= min_seconds:
            break
    end_mj, t1 = counter.millijoules(), clock()
    return EnergyReading(calls, t1 - t0, end_mj - start_mj, idle_watts)


def idle_power(counter: EnergyCounter, seconds: float = 1.0,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Watts the board draws doing nothing for ``seconds``."""
    start_mj, t0 = counter.millijoules(), clock()
    sleep(seconds)
    return (counter.millijoules() - start_mj) / 1e3 / (clock() - t0)


def nvml_unavailable_reason() -> str | None:
    """Why NVML's energy counter cannot be read here, or None."""
    try:
        import pynvml
    except ImportError:
        return "pynvml is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as err:
        return f"NVML cannot start ({type(err).__name__}: {err})"
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as err:
        return f"the total-energy counter cannot be read ({type(err).__name__}: {err})"
    return None


class NvmlCounter:
    """The total-energy counter of the NVML device behind a CUDA device (matched by PCI bus
    id, so ``CUDA_VISIBLE_DEVICES`` cannot point it at another board)."""

    def __init__(self, cuda_index: int = 0) -> None:
        import pynvml
        import torch

        pynvml.nvmlInit()
        self._nvml = pynvml
        self.handle = None
        props = torch.cuda.get_device_properties(cuda_index)
        bus = getattr(props, "pci_bus_id", None)
        if bus is not None:
            bus_id = (f"{getattr(props, 'pci_domain_id', 0):08X}:{bus:02X}:"
                      f"{getattr(props, 'pci_device_id', 0):02X}.0")
            try:
                self.handle = pynvml.nvmlDeviceGetHandleByPciBusId_v2(bus_id)
            except Exception:
                self.handle = None
        if self.handle is None:
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(cuda_index)

    def millijoules(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def driver_version(self) -> str:
        version = self._nvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
