"""Block sizes for the Triton REVD2 kernel: a short candidate list, timed on the device once
per call shape, the choice cached in memory and on disk.

Why our own tuner rather than ``triton.autotune``: a candidate that fails to compile or
launch (too much shared memory, a compiler error) is recorded and skipped instead of ending
the call; each candidate's output is checked against PyTorch's TDC (``conv2d`` + pixel
shuffle) before it may win, so a miscompiled variant can never be chosen; and every timing is
kept in :data:`TUNING_LOG` so a benchmark run can report them.

Choices are keyed by the device name, Triton / PyTorch versions and the call's shapes, strides
layout, dtype, geometry and bias kind, and kept in ``triton-revd2.json`` beside
``algorithm="auto"``'s cache (``UPCONV_CACHE_DIR``; written atomically). ``UPCONV_TRITON_TUNE=0``
skips timing and uses the first candidate (as the interpreter always does);
``UPCONV_TRITON_TUNE_BUDGET_S`` caps the seconds a process spends tuning.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import Tensor

from ..shapes import IntPair, Pad4
from . import triton_plan as tp
from .triton_revd2 import float32_as_tf32, interpreting
from .weight_cache import derived

SCHEMA = "3"
CACHE_FILE = "triton-revd2.json"
TUNE_ENV = "UPCONV_TRITON_TUNE"
#: Seconds of tuning (compiles included) a process may spend; later new shapes take the
#: first candidate untuned (recorded in :data:`TUNING_LOG`). Unlimited when unset.
BUDGET_ENV = "UPCONV_TRITON_TUNE_BUDGET_S"
_SPENT = [0.0]
#: Every tuning this process ran: key, per-candidate milliseconds (or error), choice.
TUNING_LOG: list[dict] = []
_MEMORY: dict[str, tp.Config] = {}


def _pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def candidate_configs(dtype: torch.dtype, cin: int, slots: int, grid_w: int,
                      mixed: bool, shuffle: IntPair | None = None,
                      nchw_input: bool = False) -> list[tp.Config]:
    """The configurations worth timing for a call, best guess first (the first is also what
    runs untuned: the interpreter, ``UPCONV_TRITON_TUNE=0``, a spent tuning budget).

    Short on purpose: every new configuration costs a compile on first use (CPU seconds for
    sm_90 on the development machine: 0.3–0.8 for the ``flat`` loop, 1.5–2.5 with unrolled
    16-bit dots, several more with unrolled 3×TF32 float32 dots, which are left out).
    Tensor-core configs (``tl.dot`` needs M, N, K ≥ 16): all slots of a tile in one block up
    to 128 (the input tile is then read once for all of them), ``block_k`` = Cin up to 64
    (32 for float32: the same shared memory per stage), tiles of 128 or 256 phase-grid pixels
    as rows of 64 (coalesced along NCHW rows) where the grid is that wide; taps as one
    software-pipelined loop, and (16-bit types) once unrolled; the 256-pixel tile also with
    four stages and not pipelined with 8 warps (on an H200 that one won every float32 NCHW
    call by ~2×: its plain loads can hit L1, the pipeline's ``cp.async.cg`` cannot). An FMA
    config where few input channels would leave an MMA mostly zeros, 64-slot blocks when
    there are more than 64 slots, and, where phases reach different tap counts, the first
    config split per tap pattern (no zero-tap products, one launch per pattern). Where the
    slots can be stored as whole output rows (``shuffle``, the ``(sh, sw)`` of
    :func:`~upconv.kernels.triton_plan.shuffle_phases`), the first tile and the pipelined large
    tile once more with that store: the plain store writes each phase's every ``sw``-th
    column, scattered 2- or 4-byte stores. For an NCHW input, the channels_last tiles once
    more reading a channels_last copy of the input (``nhwc_input``): NCHW loads of shifted
    taps are one element per thread (on an H200, G1 fp16 took 0.35 ms from NCHW against
    0.16 from channels_last, G3 0.86 against 0.38; the copy costs a pass over the input).
    Where a block holds 32 slots or more on a wide grid, the four-stage tiles that a wider
    sweep on an H200 measured faster (:mod:`upconv.bench.gpu_sweep`; comment below).
    """
    bn = min(128, max(16, _pow2(slots)))
    bk = min(64 if dtype.itemsize == 2 else 32, max(16, _pow2(cin)))
    small, large = ((2, 64), (4, 64)) if grid_w > 64 else ((4, 16), (4, 32))
    warps = 4 if small[0] * small[1] * bn <= 8192 else 8
    dots = [tp.Config(*small, bn, bk, True, num_warps=warps, num_stages=3, flat=True)]
    if dtype.itemsize == 2:  # unrolled 3×TF32 dots take 5-10× as long to compile
        dots.append(tp.Config(*small, bn, bk, True, num_warps=warps))
    if large[0] * large[1] * bn <= 16384:
        dots.append(tp.Config(*large, bn, bk, True, num_warps=4 if bn <= 16 else 8,
                              num_stages=3, flat=True))
        if bn <= 64:  # the same, one more load in flight (the H200's best tiles were the
            # large ones on channels_last inputs, whose masked loads are latency-bound)
            dots.append(tp.Config(*large, bn, bk, True, num_warps=4 if bn <= 16 else 8,
                                  num_stages=4, flat=True))
        # and not pipelined, more warps: the pipelined loads are cp.async.cg, which bypass
        # L1, so a tile's nine shifted reloads all come from L2; plain loads may hit L1
        dots.append(tp.Config(*large, bn, bk, True, num_warps=8, num_stages=1, flat=True))
    if slots > 64:
        dots.append(tp.Config(*small, 64, bk, True, num_warps=4, num_stages=3, flat=True))
    fmas = []
    if cin < 16:  # an MMA would be mostly zeros along K; on an H200 the FMA path lost 5-12×
        # to the dots wherever K was full (few slots included), so it is tried only here
        fn = min(16, _pow2(slots))
        fmas.append(tp.Config(*small, fn, max(1, min(16, _pow2(cin), 64 // fn)), False,
                              flat=True))
    shuffled = []
    if shuffle is not None:
        for config in (dots[0], *(c for c in dots[1:] if c.block_m > dots[0].block_m
                                  and c.num_stages == 3)):
            if config.block_n % (shuffle[0] * shuffle[1]) == 0:
                shuffled.append(tp.Config(**{**asdict(config), "shuffle": True}))
    # what a wider sweep on an H200 found faster than all of the above on channels_last
    # inputs (python -m upconv.bench.gpu_sweep, 2026-11-27): one-row tiles with four stages
    # for 16-bit types (G2 fp16 0.151 ms against 0.185), and for float32 four rows with four
    # stages, on 64-slot blocks with 16-channel K steps where there are more slots (G3 1.38 ms
    # against 2.05) or with 4 warps where the slots fit one block (G2 0.393 against 0.428)
    # (blocks of 32 slots or more: with one output channel, G1, the sweep found nothing
    # better than the tiles above; the one-row tile was measured on 64-slot blocks only)
    swept = []
    if grid_w > 64 and 32 <= bn <= 64 and dtype.itemsize == 2:
        swept.append(tp.Config(1, 64, bn, bk, True, num_warps=4, num_stages=4, flat=True))
    elif grid_w > 64 and bn >= 32:
        if slots > 64 and cin >= 16:
            swept.append(tp.Config(4, 64, 64, 16, True, num_warps=8, num_stages=4, flat=True))
        if bn <= 64:
            swept.append(tp.Config(4, 64, bn, bk, True, num_warps=4, num_stages=4, flat=True))
    extra = []
    for config in swept:  # stored shuffled where they can be, as they were measured
        if shuffle is not None and config.block_n % (shuffle[0] * shuffle[1]) == 0:
            config = tp.Config(**{**asdict(config), "shuffle": True})
        if config not in dots + shuffled:
            extra.append(config)
    ordered = dots + shuffled + extra + fmas
    if nchw_input:
        # what the H200 chose for channels_last inputs: the pipelined tiles, stored shuffled
        # where they can be
        for config in (shuffled or [c for c in dots if c.num_stages == 3][:2]):
            ordered.append(tp.Config(**{**asdict(config), "nhwc_input": True}))
    if mixed:
        ordered.append(tp.Config(**{**asdict(ordered[0]), "merged": False}))
    return ordered


def _layout(t: Tensor) -> str:
    if t.is_contiguous():
        return "nchw"
    if t.is_contiguous(memory_format=torch.channels_last):
        return "nhwc"
    return "strided" + "x".join(map(str, t.stride()))


def _tf32(x: Tensor) -> bool:
    """Whether a float32 call runs its products in TF32 (not 3×TF32)."""
    return x.dtype == torch.float32 and float32_as_tf32()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def tuning_key(x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair,
               padding: Pad4, out_size: IntPair) -> str:
    """What a choice depends on: device, versions and the call (not the values)."""
    import triton

    bias_kind = "none" if bias is None else "x".join(map(str, bias.shape))
    return ";".join([
        f"schema={SCHEMA}", f"device={device_name(x.device)}", f"triton={triton.__version__}",
        f"torch={torch.__version__}", f"dtype={str(x.dtype).removeprefix('torch.')}",
        f"x={tuple(x.shape)}", f"layout={_layout(x)}", f"tf32={_tf32(x)}",
        f"w={tuple(weight.shape)}", f"s={stride}", f"p={padding}", f"out={out_size}",
        f"bias={bias_kind}"])


def _cache_path():
    from ..autotune import cache_path

    return cache_path().parent / CACHE_FILE


def _from_disk(key: str) -> tp.Config | None:
    from ..autotune import _load

    entry = _load(_cache_path()).get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        return None
    try:
        return tp.Config(**entry["config"])
    except TypeError:  # an older schema's fields
        return None


def _to_disk(key: str, config: tp.Config, timings: dict) -> None:
    from ..autotune import _load, _save

    path = _cache_path()
    data = _load(path)  # re-read: another process may have added entries meanwhile
    data[key] = {"config": asdict(config), "ms": timings}
    with contextlib.suppress(OSError):  # read-only cache: a re-tune next time, nothing else
        _save(path, data)


def _tolerance(dtype: torch.dtype) -> float:
    """Relative (to the output's largest magnitude) error that marks a candidate as wrong."""
    return {torch.float32: 1e-2, torch.float16: 2e-2, torch.bfloat16: 5e-2}[dtype]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tune(x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
         out_size: IntPair, configs: list[tp.Config],
         timer: Callable[[Callable[[], object]], float] | None = None
         ) -> tuple[tp.Config, dict]:
    """Time every candidate on the device; ``(fastest correct config, label → ms or error)``.

    Each candidate's output is compared with PyTorch's TDC on the same inputs first; wrong or
    failing candidates are reported and never chosen. Raises RuntimeError if none works.
    ``timer(fn)`` gives seconds per call (default: CUDA events around each call after an L2
    flush, median of 15: :meth:`~upconv.kernels.device_timing.DeviceClock.median`).
    """
    from .torch_paths import deconv2d_tdc_torch
    from .triton_revd2 import launch_all, new_output, prepare  # late: tests replace them

    if timer is None:
        from .device_timing import DeviceClock

        timer = DeviceClock(x.device).median

    want = deconv2d_tdc_torch(x, weight, bias, stride, padding, (0, 0), out_size).float()
    scale = float(want.abs().max()) + 1e-6
    y = new_output(x, weight.shape[1], out_size)
    timings: dict[str, float | str] = {}
    best: tuple[float, tp.Config] | None = None
    for config in configs:
        label = config.label()
        try:
            prepared = prepare(x, weight, bias, stride, padding, out_size, config)
            t0 = time.perf_counter()
            launch_all(prepared, x, y)
            _sync(x.device)
            first = time.perf_counter() - t0
            err = float((y.float() - want).abs().max()) / scale
            if not err <= _tolerance(x.dtype):
                timings[label] = f"wrong output (max error {err:.2e} of the largest output)"
                continue
            ms = timer(lambda p=prepared: launch_all(p, x, y)) * 1e3
        except Exception as exc:  # compile or launch failure of this candidate only
            timings[label] = f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        timings[label] = round(ms, 5)
        timings[label + " first call s"] = round(first, 3)
        if best is None or ms < best[0]:
            best = (ms, config)
    if best is None:
        raise RuntimeError(f"no Triton REVD2 configuration ran correctly: {timings}")
    return best[1], timings


def call_candidates(x: Tensor, weight: Tensor, stride: IntPair, padding: Pad4,
                    out_size: IntPair) -> list[tp.Config]:
    """:func:`candidate_configs` for one call (its dtype, channels, slots, phase-grid width,
    tap patterns, shuffle and input layout)."""
    cin, c, kh, kw = weight.shape
    qw = tp.phase_grid(stride[1], padding[2], out_size[1])
    return candidate_configs(x.dtype, cin, tp.slot_count(c, (kh, kw), stride, padding, out_size),
                             qw[1] - qw[0], tp.mixed_taps((kh, kw), stride, padding, out_size),
                             tp.shuffle_phases((kh, kw), stride, padding, out_size),
                             x.is_contiguous() and not x.is_contiguous(
                                 memory_format=torch.channels_last))


def choose_config(x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair,
                  padding: Pad4, out_size: IntPair) -> tp.Config:
    """The configuration for this call: cached, else tuned on the device (first candidate
    under the interpreter or with ``UPCONV_TRITON_TUNE=0``)."""
    configs = call_candidates(x, weight, stride, padding, out_size)
    if interpreting() or x.device.type != "cuda" or os.environ.get(TUNE_ENV) == "0":
        return configs[0]
    key = tuning_key(x, weight, bias, stride, padding, out_size)
    config = _MEMORY.get(key) or _from_disk(key)
    if config is None and _SPENT[0] > float(os.environ.get(BUDGET_ENV, "inf")):
        config = configs[0]
        TUNING_LOG.append({"key": key, "choice": config.label(),
                           "untuned": f"tuning budget ({os.environ[BUDGET_ENV]} s) spent"})
    elif config is None:
        t0 = time.perf_counter()
        config, timings = tune(x, weight, bias, stride, padding, out_size, configs)
        spent = time.perf_counter() - t0
        _SPENT[0] += spent
        TUNING_LOG.append({"key": key, "ms": timings, "choice": config.label(),
                           "seconds": round(spent, 2)})
        _to_disk(key, config, timings)
    _MEMORY[key] = config
    return config


def prepared_call(x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair,
                  padding: Pad4, out_size: IntPair) -> list:
    """The call's launches (:func:`~upconv.kernels.triton_revd2.prepare` under its chosen
    config), kept with the weight per input signature, geometry and bias, so that a repeated
    call costs a dictionary lookup."""
    bias_id = None if bias is None else (id(bias), bias._version, bias.data_ptr())
    device = x.device
    key = ("triton-call", x.shape, x.stride(), x.dtype, device, stride, padding, out_size,
           bias_id, device.type == "cpu" and interpreting(), _tf32(x))

    def make():
        from .triton_revd2 import prepare  # late: tests replace it

        config = choose_config(x, weight, bias, stride, padding, out_size)
        return (None if bias is None else weakref.ref(bias),
                prepare(x, weight, bias, stride, padding, out_size, config))

    ref, prepared = derived(weight, key, make)
    if bias is not None and ref() is not bias:  # a new bias reusing a freed one's id
        prepared = make()[1]
    return prepared


def clear_memory() -> None:
    """Forget in-process choices (the on-disk cache stays)."""
    _MEMORY.clear()
