"""Host (CPU) time per call of the CUDA path, split where it goes.

A small layer's kernel runs in 20–50 µs on a data-centre GPU; what a call costs the host can
then decide a model's throughput. Each case is called ``calls`` times back to back with no
synchronisation inside the timed block (launches are asynchronous, so this is the host's
time while the device keeps up), median of ``blocks`` blocks, µs per call:

* ``cuDNN conv + pixel_shuffle`` and ``one elementwise op``: PyTorch's own costs, the scale;
* ``upconv.deconv2d`` (the function users call) and ``Deconv2d`` (the module);
* ``upconv path, launch stubbed``: the same call with the Triton launch replaced by a no-op:
  upconv's own Python (argument checks, plan and tuning lookups);
* ``launch_all``: the prepared launch alone (the alignment check, then Triton);
* ``Triton launch``: ``kernel[grid](...)`` with every argument ready: Triton's launcher and
  the CUDA launch, what no Python of ours can remove.

Needs the Triton kernel on the device (CUDA, or Triton's interpreter on the CPU, where the
numbers mean nothing but the code runs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from unittest import mock

import torch
import torch.nn.functional as F

from .gpu_zoo import gpu_tensors
from .zoo import Layer


def _host_us(fn: Callable[[], object], calls: int, blocks: int, sync: Callable[[], None]
             ) -> float:
    """Median over ``blocks`` of the host's µs per call of ``calls`` back-to-back calls."""
    fn()
    sync()
    per_call = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t0) / calls * 1e6)
        sync()  # the device drains between blocks: each block starts with an empty queue
    return statistics.median(per_call)


@contextmanager
def _launch_stubbed():
    from ..kernels import triton_revd2

    with mock.patch.object(triton_revd2, "launch_all", lambda prepared, x, y: y):
        yield


def host_costs(layer: Layer, dtype: torch.dtype, device: torch.device, calls: int = 200,
               blocks: int = 5) -> list[dict] | str:
    """``[{"case", "us_per_call"}]`` for ``layer``'s D-SP in ``dtype`` on ``device``, or why
    the kernel cannot run there."""
    from ..functional import deconv2d
    from ..kernels import triton_revd2, triton_tune
    from ..layers import Deconv2d

    t = gpu_tensors(layer, dtype, device)
    geo = t.geo_sp
    reason = triton_revd2.unsupported_reason(t.x, t.wd_sp, t.bd_sp)
    if reason:
        return reason

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    cin, c, kh, kw = t.wd_sp.shape
    module = Deconv2d(cin, c, (kh, kw), geo.stride, geo.padding, bias=t.bd_sp is not None,
                      bias_period=None if t.bd_sp is None or t.bd_sp.ndim == 1
                      else tuple(t.bd_sp.shape[1:]), device=device, dtype=dtype).eval()
    with torch.no_grad():
        module.weight.copy_(t.wd_sp)
        if t.bd_sp is not None:
            module.bias.copy_(t.bd_sp)
    out_size = geo.output_size(*t.x.shape[-2:])
    prepared = triton_tune.prepared_call(t.x, t.wd_sp, t.bd_sp, geo.stride, geo.padding,
                                         out_size)
    y = triton_revd2.new_output(t.x, c, out_size)
    fn = triton_revd2.kernel()
    (grid, args, meta), *_ = prepared
    wpack, bias_t, c, fh, fw, sbias, *ints = args
    # the input in the strides the launch was prepared for (a tuned ``nhwc_input`` config
    # reads a channels_last copy, which ``launch_all`` makes per call)
    x_ready = torch.empty_strided(t.x.shape, tuple(ints[-4:]), dtype=t.x.dtype,
                                  device=t.x.device).copy_(t.x)
    launch_args = (x_ready, wpack, y, bias_t, c, fh, fw, sbias, *ints, *y.stride())

    def call() -> torch.Tensor:
        return deconv2d(t.x, t.wd_sp, t.bd_sp, geo.stride, geo.padding, algorithm="revd2")

    pad = layer.k // 2
    cases: dict[str, Callable[[], object]] = {
        "cuDNN conv + pixel_shuffle": lambda: F.pixel_shuffle(
            F.conv2d(t.x, t.w_sp, t.b_sp, padding=pad), layer.r),
        "one elementwise op (y.add_(0))": lambda: y.add_(0),
        "upconv.deconv2d": call,
        "Deconv2d module": lambda: module(t.x),
        "launch_all (prepared launch)": lambda: triton_revd2.launch_all(prepared, t.x, y),
        "Triton launch (kernel[grid](...), arguments ready)": lambda: fn[grid](
            *launch_args, **meta),
    }
    out = []
    with torch.no_grad():
        for name, case in cases.items():
            out.append({"case": name, "us_per_call": _host_us(case, calls, blocks, sync)})
        with _launch_stubbed():
            out.append({"case": "upconv.deconv2d, launch stubbed (upconv's own Python)",
                        "us_per_call": _host_us(call, calls, blocks, sync)})
    return [{**r, "us_per_call": round(r["us_per_call"], 2)} for r in out]
