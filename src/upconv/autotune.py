"""``algorithm="auto"``: time the candidate implementations once per layer shape, keep the fastest.

Candidates (all exact deconvolutions with :func:`upconv.deconv2d`'s contract):

* ``"revd2-numba"``: the compiled REVD2 kernel (:mod:`upconv.kernels`);
* ``"tdc-torch"``: TDC as PyTorch ``conv2d`` + pixel shuffle (oneDNN GEMM);
* ``"tdc-torch-nhwc"``: the same with the convolution in channels_last;
* ``"stdd-torch"``: PyTorch's ``conv_transpose2d``;
* ``"convtranspose-ort"``: ONNX Runtime's ``ConvTranspose`` (:mod:`upconv.kernels.ort_path`);
* ``"revd2-triton"``: the REVD2 Triton kernel for CUDA (:mod:`upconv.kernels.triton_revd2`).

The compiled kernel and ONNX Runtime are float32 CPU inference only, the Triton kernel CUDA
inference only: calls that need gradients weigh only the PyTorch paths. On a CUDA device the
candidates are the Triton kernel, TDC (cuDNN ``conv2d`` + pixel shuffle, NCHW and
channels_last) and ``conv_transpose2d``, timed on the device with CUDA events, and choices
are keyed by the device's name.

Candidates are compared by their median time over interleaved rounds, not their best: the
GEMM paths allocate feature-map-sized temporaries whose page faults come and go, and a best
round hides them (held-out H6 D-SP: TDC's best 3.4 ms beat the kernel's 3.6 ms, its median in
the benchmark was 6.0 ms against 3.9). Within :data:`KERNEL_PREFERENCE` of the fastest, the
allocation-free kernel is kept. When another candidate wins but the kernel is within
:data:`CLOSE_CALL`, the two are timed again head to head, back to back in alternating order,
and the median of the paired ratios decides: medians of a shared 2-core machine still moved
±20%, and on held-out H4 D-SP they once picked TDC (23.6 ms in the benchmark) over the kernel
(16.2 ms).

A choice is keyed by a version string (upconv, torch, numba, onnxruntime, CPU) plus the call's
signature (shapes, stride, crops, bias kind, dtype, memory format) and the thread count, kept in
memory and in ``autotune.json`` under the user cache directory (``UPCONV_CACHE_DIR`` overrides it),
written atomically (without ``platformdirs``, under ``$XDG_CACHE_HOME/upconv`` or
``~/.cache/upconv``). Delete that file to re-tune.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .functional import DeconvCall

Impl = Callable[..., Tensor]

CACHE_ENV = "UPCONV_CACHE_DIR"
CACHE_FILE = "autotune.json"
#: Bump when a candidate's implementation changes enough to invalidate old timings.
SCHEMA = "6"  # 6: candidates timed with the conversion to the operator's output layout
#: The compiled kernel is chosen when its median is within this fraction of the fastest one:
#: below the run-to-run noise of a tuning, and it allocates nothing the size of a feature map.
KERNEL_PREFERENCE = 0.05
KERNEL = "revd2-numba"
#: The kernel ``auto`` prefers on a CUDA device, within :data:`GPU_KERNEL_PREFERENCE` (CUDA
#: events are far steadier than host timings of a shared CPU, so the margin is smaller).
GPU_KERNEL = "revd2-triton"
GPU_KERNEL_PREFERENCE = 0.02
#: A win by less than this factor over the kernel is re-checked head to head.
CLOSE_CALL = 1.3


def candidates() -> dict[str, Impl]:
    """Name → implementation of every candidate ``auto`` weighs."""
    from .kernels import deconv2d_revd2_compiled
    from .kernels.ort_path import deconv2d_convtranspose_ort
    from .kernels.torch_paths import (
        deconv2d_convtranspose_torch,
        deconv2d_tdc_torch,
        deconv2d_tdc_torch_nhwc,
    )
    from .kernels.triton_revd2 import deconv2d_revd2_triton

    return {
        KERNEL: deconv2d_revd2_compiled,
        "tdc-torch": deconv2d_tdc_torch,
        "tdc-torch-nhwc": deconv2d_tdc_torch_nhwc,
        "stdd-torch": deconv2d_convtranspose_torch,
        "convtranspose-ort": deconv2d_convtranspose_ort,
        GPU_KERNEL: deconv2d_revd2_triton,
    }


def eligible(call: DeconvCall) -> list[str]:
    """Candidates that can run ``call`` (compiled kernel, ONNX Runtime: float32 CPU inference;
    Triton kernel: CUDA inference)."""
    from .kernels import unsupported_reason
    from .kernels.ort_path import unsupported_reason as ort_unsupported_reason

    names = ["tdc-torch", "tdc-torch-nhwc", "stdd-torch"]
    if call.x.is_cuda:
        from .kernels.triton_revd2 import unsupported_reason as triton_unsupported_reason

        if triton_unsupported_reason(call.x, call.weight, call.bias, call.out_size) is None:
            names.insert(0, GPU_KERNEL)
        return names
    if unsupported_reason(call.x, call.weight, call.bias) is None:
        names.insert(0, KERNEL)
    if ort_unsupported_reason(call.x, call.weight, call.bias) is None:
        names.append("convtranspose-ort")
    return names


def cache_path() -> Path:
    """``$UPCONV_CACHE_DIR/autotune.json``, else the platform's user cache dir for upconv
    (``platformdirs``; where it is not installed, ``$XDG_CACHE_HOME/upconv`` or
    ``~/.cache/upconv``)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        try:
            import platformdirs
        except ImportError:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                    ".cache")
            root = os.path.join(base, "upconv")
        else:
            root = platformdirs.user_cache_dir("upconv")
    return Path(root) / CACHE_FILE


def version_key() -> str:
    """What a timing depends on besides the call: library versions and the CPU."""
    import numba

    from . import __version__
    from .kernels.ort_path import ort_import_error

    ort = "none"
    if ort_import_error() is None:
        import onnxruntime

        ort = onnxruntime.__version__
    cpu = platform.processor() or platform.machine()
    return f"upconv={__version__};schema={SCHEMA};torch={torch.__version__};" \
           f"numba={numba.__version__};onnxruntime={ort};cpu={cpu}"


def signature(call: DeconvCall, threads: int) -> str:
    """Everything about a call that can change which candidate is fastest."""
    x, w, b = call.x, call.weight, call.bias
    bias = "none" if b is None else ("channel" if b.ndim == 1 else "periodic" + "x".join(
        map(str, b.shape[1:])))
    layout = "channels_last" if (x.is_contiguous(memory_format=torch.channels_last)
                                 and not x.is_contiguous()) else (
        "contiguous" if x.is_contiguous() else "strided")
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, w, b) if t is not None)
    dev = x.device.type
    if x.is_cuda:  # a choice holds for one kind of GPU (and one Triton)
        from .kernels.triton_revd2 import triton_import_error

        triton = "none"
        if triton_import_error() is None:
            import triton as triton_module

            triton = triton_module.__version__
        dev = f"cuda:{torch.cuda.get_device_name(x.device)};triton={triton}"
    parts = [f"x={tuple(x.shape)}", f"w={tuple(w.shape)}", f"s={call.stride}",
             f"p={call.padding}", f"op={call.output_padding}", f"bias={bias}",
             f"dtype={str(x.dtype).removeprefix('torch.')}", f"dev={dev}",
             f"layout={layout}", f"grad={int(grad)}", f"threads={threads}"]
    return ";".join(parts)


def as_run(impl: Impl, call: DeconvCall) -> Callable[[], Tensor]:
    """``impl`` on ``call`` as the operator returns it: in the operator's output layout
    (:func:`~upconv.functional.output_memory_format`). A candidate that leaves a
    channels_last result (TDC in NHWC) is charged the conversion it costs every call."""
    from .functional import output_memory_format

    fmt = output_memory_format(call.x)
    args = (call.x, call.weight, call.bias, call.stride, call.padding, call.output_padding,
            call.out_size)
    return lambda: impl(*args).contiguous(memory_format=fmt)


def time_candidates(impls: dict[str, Impl], call: DeconvCall, repeats: int = 7,
                    budget_s: float = 3.0, gap_s: float = 0.01) -> dict[str, float]:
    """Median seconds of each ``impl(call)``, timed round-robin after one warm-up call each.

    Round-robin spreads slow drifts of a shared machine over all candidates, and the median
    counts the allocation and page-fault costs a candidate pays in most calls (a best round
    hides them). ``gap_s`` of idle time before each timed call lets the previous candidate's
    spin-waiting threads (PyTorch's OpenMP) settle instead of slowing the next one. Stops
    early (after at least three rounds) once ``budget_s`` is spent. CUDA calls are timed on
    the device with CUDA events (:func:`time_candidates_cuda`).
    """
    if call.x.is_cuda:
        return time_candidates_cuda(impls, call)
    fns = {name: as_run(impl, call) for name, impl in impls.items()}
    rounds: dict[str, list[float]] = {name: [] for name in impls}
    with torch.no_grad():
        for fn in fns.values():
            fn()  # compiles, plans, fills caches
        start = time.perf_counter()
        for i in range(repeats):
            for name, fn in fns.items():
                time.sleep(gap_s)
                t0 = time.perf_counter()
                fn()
                rounds[name].append(time.perf_counter() - t0)
            if i >= 2 and time.perf_counter() - start > budget_s:
                break
    return {name: statistics.median(times) for name, times in rounds.items()}


def time_candidates_cuda(impls: dict[str, Impl], call: DeconvCall, repeats: int = 15
                         ) -> dict[str, float]:
    """Median seconds of each ``impl(call)`` on its CUDA device: CUDA events around each call
    after the L2 cache is flushed, round-robin, after two warm-up calls each (the first tunes
    the Triton kernel); see :class:`~upconv.kernels.device_timing.DeviceClock`."""
    from .kernels.device_timing import DeviceClock

    fns = {name: as_run(impl, call) for name, impl in impls.items()}
    times = DeviceClock(call.x.device).interleaved(fns, repeats, warmup=2)
    return {name: statistics.median(t) for name, t in times.items()}


def paired_ratio(a: Impl, b: Impl, call: DeconvCall, pairs: int = 9, gap_s: float = 0.01
                 ) -> float:
    """Median over ``pairs`` back-to-back runs of ``time(a) / time(b)`` (order alternating)."""
    fa, fb = as_run(a, call), as_run(b, call)
    ratios = []
    with torch.no_grad():
        for i in range(pairs):
            spent = {}
            for name, fn in (("a", fa), ("b", fb)) if i % 2 == 0 else (("b", fb), ("a", fa)):
                time.sleep(gap_s)
                t0 = time.perf_counter()
                fn()
                spent[name] = time.perf_counter() - t0
            ratios.append(spent["a"] / spent["b"])
    return statistics.median(ratios)


def pick(seconds: dict[str, float]) -> str:
    """The fastest candidate, or the compiled kernel (the Triton one on a GPU) when within
    :data:`KERNEL_PREFERENCE`: it allocates nothing the size of a feature map."""
    fastest = min(seconds, key=seconds.__getitem__)
    for kernel, margin in ((KERNEL, KERNEL_PREFERENCE), (GPU_KERNEL, GPU_KERNEL_PREFERENCE)):
        if kernel in seconds and seconds[kernel] <= seconds[fastest] * (1 + margin):
            return kernel
    return fastest


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, data: dict) -> None:
    """Write ``data`` as JSON atomically: temp file in the same directory, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".autotune-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_MEMORY: dict[str, str] = {}


def tune(call: DeconvCall) -> dict[str, float]:
    """Time every eligible candidate on ``call``: name → median seconds."""
    impls = candidates()
    return time_candidates({name: impls[name] for name in eligible(call)}, call)


def choose(call: DeconvCall) -> str:
    """The fastest candidate's name for ``call`` at the current thread count (tuned once)."""
    key = f"{version_key()}|{signature(call, torch.get_num_threads())}"
    path = cache_path()
    name = _MEMORY.get(f"{path}|{key}")
    if name is not None:
        return name
    entry = _load(path).get(key)
    if isinstance(entry, dict) and entry.get("choice") in eligible(call):
        name = entry["choice"]
    else:
        timings = tune(call)
        name = pick(timings)
        entry = {"seconds": timings}
        if name != KERNEL and KERNEL in timings and timings[KERNEL] < timings[name] * CLOSE_CALL:
            impls = candidates()
            ratio = paired_ratio(impls[KERNEL], impls[name], call)
            entry[f"{KERNEL}/{name}"] = ratio
            if ratio <= 1 + KERNEL_PREFERENCE:
                name = KERNEL
        entry["choice"] = name
        data = _load(path)  # re-read: another process may have added entries meanwhile
        data[key] = entry
        _save(path, data)
    _MEMORY[f"{path}|{key}"] = name
    return name


def resolve(call: DeconvCall) -> Impl:
    """The implementation ``auto`` runs for ``call``.

    Repeated calls with the same tensors' shapes, layout and geometry are answered from a
    per-process table keyed by a plain tuple, without rebuilding the string key: on a GPU a
    small layer runs in microseconds, so the choice must cost less than that.
    """
    x, b = call.x, call.bias
    grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, call.weight, b) if t is not None)
    fast = (tuple(x.shape), x.stride(), x.dtype, x.device, tuple(call.weight.shape),
            None if b is None else tuple(b.shape), call.stride, call.padding,
            call.output_padding, grad, torch.get_num_threads(), os.environ.get(CACHE_ENV))
    impl = _RESOLVED.get(fast)
    if impl is None:
        impl = _RESOLVED[fast] = candidates()[choose(call)]
    return impl


_RESOLVED: dict[tuple, Impl] = {}


def clear_memory() -> None:
    """Forget in-process choices (the on-disk cache stays)."""
    _MEMORY.clear()
    _RESOLVED.clear()
