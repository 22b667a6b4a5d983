"""REVD2 on CUDA GPUs: one fused, output-stationary Triton kernel (float32, float16, bfloat16).

A program owns a tile of ``block_h × block_w`` phase-grid pixels of one image and a block of
``block_n`` slots (channel phases, :mod:`upconv.kernels.triton_plan`). For each tap
``(t_h, t_w)`` of its window it loads the input tile shifted by the tap (zero outside the
input: masked loads, no padded copy), ``block_k`` input channels at a time, and multiplies it
by the packed ``(block_k, block_n)`` weights of that tap: ``tl.dot`` on tensor cores (fp32
accumulation) or, for few channels, one FMA rank-1 update per channel. float32 operands go
to the tensor cores as PyTorch's convolutions send them (:func:`float32_as_tf32`): TF32 by
default, as cuDNN does, and 3×TF32 (``tf32x3``, float32-grade accuracy) when TF32 is off for
convolutions (``torch.backends.cudnn.conv.fp32_precision = "ieee"``, or the older
``torch.backends.cudnn.allow_tf32 = False``). The accumulator starts at zero, receives the
(per-slot or gathered periodic) bias, and every output is stored once, straight to its
interleaved position ``(fh + sh·qh − top, fw + sw·qw − left)`` through the output's strides:
no temporaries the size of a feature map (except a channels_last copy of an NCHW input, a
tuning candidate taken only where it measures faster: ``Config.nhwc_input``), no
pixel-shuffle pass. All slots of a tile run in
adjacent programs, so the input tile comes from DRAM once and from L2 for the other slot
blocks.

Triton is optional: it is imported on first use. :func:`unsupported_reason` says why a call
cannot run here ("triton is not installed", CPU tensors without ``TRITON_INTERPRET=1``,
autograd, dtypes, 32-bit index range); callers fall back to another implementation then.
Under ``TRITON_INTERPRET=1`` the same kernel runs on CPU tensors in Triton's interpreter
(how the tests check it without a GPU).
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter

import torch
from torch import Tensor

from ..shapes import IntPair, Pad4
from . import triton_plan as tp
from .weight_cache import derived

log = logging.getLogger(__name__)

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
#: Offsets are 32-bit inside the kernel.
MAX_ELEMENTS = 2**31 - 1
#: How often each fallback reason was seen (``implementation()`` records them here).
FALLBACKS: Counter[str] = Counter()


@functools.cache
def triton_import_error() -> str | None:
    """Why Triton cannot be used here, or None."""
    try:
        import triton.language  # noqa: F401
    except ImportError:
        return "triton is not installed"
    except Exception as err:  # broken installs raise more than ImportError
        return f"triton is unavailable ({type(err).__name__}: {err})"
    return None


def interpreting() -> bool:
    """Whether Triton's CPU interpreter is on (``TRITON_INTERPRET``, read as Triton reads it)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def unsupported_reason(x: Tensor, weight: Tensor, bias: Tensor | None,
                       out_size: IntPair | None = None) -> str | None:
    """Why the Triton kernel cannot run this call (another implementation must), or None."""
    err = triton_import_error()
    if err:
        return err
    tensors = [t for t in (x, weight, bias) if t is not None]
    if any(t.dtype not in DTYPES for t in tensors):
        return "dtype is not float32, float16 or bfloat16"
    if len({t.dtype for t in tensors}) > 1:
        return "x, weight and bias dtypes differ"
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        return "tensors are on different devices"
    device = x.device
    if device.type == "cpu":
        if not interpreting():
            return "tensors are on the CPU (the Triton kernel runs on CUDA, or on the CPU " \
                   "under TRITON_INTERPRET=1)"
    elif device.type != "cuda":
        return f"tensors are on {device.type}, not CUDA"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "autograd needs gradients (the kernel is inference-only)"
    if x.ndim != 4 or weight.ndim != 4:
        return "x and weight must be 4-D"
    out = 0 if out_size is None else x.shape[0] * weight.shape[1] * out_size[0] * out_size[1]
    # a dense input spans its element count; others are measured
    dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    if max(x.numel() if dense else _span(x), out) > MAX_ELEMENTS:
        return "tensors exceed 32-bit indexing (2**31 elements)"
    return None


def float32_as_tf32() -> bool:
    """Whether PyTorch lets convolutions compute float32 in TF32 (its default for cuDNN);
    the kernel follows the same setting. Reads the newer per-backend setting where this
    PyTorch has it (``"none"`` inherits from the parent), else ``cudnn.allow_tf32``."""
    conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
    if conv is None:
        return bool(torch.backends.cudnn.allow_tf32)
    for setting in (conv, getattr(torch.backends.cudnn, "fp32_precision", "none"),
                    getattr(torch.backends, "fp32_precision", "none")):
        if setting != "none":
            return setting == "tf32"
    return False


def _span(t: Tensor) -> int:
    """Elements between the first and one past the last addressed element of ``t``."""
    return 1 + sum((s - 1) * st for s, st in zip(t.shape, t.stride(), strict=True)) \
        if t.numel() else 0


# --- the kernel --------------------------------------------------------------------------


def kernel() -> object:
    """The ``@triton.jit`` kernel (:mod:`upconv.kernels.triton_kernel`, imported on first use;
    interpreted or compiled as ``TRITON_INTERPRET`` says at that moment, for the process)."""
    from .triton_kernel import revd2_kernel

    return revd2_kernel


# --- launching ---------------------------------------------------------------------------


def prepare(x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
            out_size: IntPair, config: tp.Config) -> list[tuple[tuple, tuple, dict]]:
    """Everything a call's launches need except ``x`` and ``y``: ``[(grid, args, meta)]``.

    Weights are packed once per (weight tensor, version, geometry, config) and kept with the
    weight (:func:`~upconv.kernels.weight_cache.derived`); so is the per-slot bias.
    """
    n, cin, h, w = x.shape
    (sh, sw), (top, _, left, _), (oh, ow) = stride, padding, out_size
    launches = derived(weight, ("triton-revd2", stride, padding, out_size, config, x.dtype),
                       lambda: tp.plan_launches(weight, stride, padding, out_size, config,
                                                x.dtype))
    mode = tp.bias_mode(bias, stride)
    qh_lo, qh_hi = tp.phase_grid(sh, top, oh)
    qw_lo, qw_hi = tp.phase_grid(sw, left, ow)
    shuf, align = (0, 0), 1
    if config.shuffle:
        shuf = tp.shuffle_phases(tuple(weight.shape[2:]), stride, padding, out_size) or (0, 0)
        if shuf == (0, 0) or config.block_n % (shuf[0] * shuf[1]) or len(launches) != 1:
            raise ValueError(f"{config.label()}: this call's slots cannot be stored as "
                             "whole output rows (tp.shuffle_phases)")
        align, qw_lo = _aligned_start(sw, left, ow, qw_lo, x.dtype.itemsize)
    else:
        # column tiles start on a multiple of block_w (≥ 16; the few columns before qw_lo
        # are masked off): with the input row stride and width specialised on
        # 16-divisibility, the untapped column of every tile is then a run of aligned
        # addresses (vector loads in NCHW)
        qw_lo -= qw_lo % config.block_w
    tiles_h = -(-(qh_hi - qh_lo) // config.block_h)
    tiles_w = -(-(qw_hi - qw_lo) // config.block_w)
    if mode == tp.BIAS_GATHER:
        gathered = derived(bias, ("triton-bias-f32",), lambda: bias.detach().float().contiguous())
        bph, bpw = bias.shape[1:]
    else:
        gathered, bph, bpw = None, 1, 1
    sx = channels_last_strides(x.shape) if config.nhwc_input else x.stride()
    out = []
    for i, launch in enumerate(launches):
        s = launch.slots
        sbias = None
        if mode == tp.BIAS_SLOT:
            sbias = derived(bias, ("triton-slot-bias", stride, padding, out_size, config, i),
                            lambda s=s: tp.slot_bias(bias, s, padding))
        dummy = s.c  # an unused pointer argument must still be a tensor on the device
        grid = (n * tiles_h * tiles_w * launch.blocks,)
        wpack = launch.wpack if launch.wpack.numel() else dummy  # no taps: never read
        args = (wpack, gathered if gathered is not None else dummy, s.c, s.fh, s.fw,
                sbias if sbias is not None else dummy, cin, h, w, oh, ow, sh, sw, top, left,
                qh_lo, qw_lo, tiles_h, tiles_w, launch.blocks, bph, bpw, *sx)
        meta = dict(TH=s.taps[0], TW=s.taps[1], K_ITERS=-(-cin // config.block_k),
                    BLOCK_H=config.block_h, BLOCK_W=config.block_w, BLOCK_N=config.block_n,
                    BLOCK_K=config.block_k, DOT=config.dot,
                    UPCAST=config.dot and interpreting() and x.dtype == torch.bfloat16,
                    BIAS_MODE=mode, FLAT=config.flat, EVEN_K=cin % config.block_k == 0,
                    TF32X3=x.dtype == torch.float32 and not float32_as_tf32(),
                    SHUF_H=shuf[0], SHUF_W=shuf[1], ALIGN=align, num_warps=config.num_warps,
                    num_stages=config.num_stages)
        if interpreting():  # the interpreter takes no launch options
            meta.pop("num_warps")
            meta.pop("num_stages")
        out.append((grid, args, meta))
    return out


def _aligned_start(sw: int, left: int, ow: int, qw_lo: int, itemsize: int) -> IntPair:
    """``(align, q0)`` for a shuffled store: the phase-grid column ``q0 <= qw_lo`` where
    column tiles start so that each tile's first output column ``sw·q0 − left`` (and, with
    tiles of ``block_w·sw`` columns, every tile's) is a multiple of ``align`` elements = 16
    bytes, as is the output width; ``(1, qw_lo)`` where no such start exists."""
    align = 16 // itemsize
    if ow % align == 0:
        for q0 in range(qw_lo, qw_lo - align, -1):
            if (sw * q0 - left) % align == 0:
                return align, q0
    return 1, qw_lo


def _stores_aligned(y: Tensor, align: int) -> bool:
    """Whether every output row of ``y`` starts on ``align`` elements and its columns are
    contiguous (what a kernel compiled with ``ALIGN = align`` assumes)."""
    n_s, c_s, h_s, w_s = y.stride()
    return (w_s == 1 and n_s % align == 0 and c_s % align == 0 and h_s % align == 0
            and y.data_ptr() % 16 == 0)


def channels_last_strides(shape: tuple[int, ...] | torch.Size) -> tuple[int, int, int, int]:
    """The strides of a dense channels_last tensor of ``shape (N, C, H, W)``."""
    _, c, h, w = shape
    return (h * w * c, 1, w * c, c)


def launch_all(prepared: list[tuple[tuple, tuple, dict]], x: Tensor, y: Tensor) -> Tensor:
    """Run prepared launches on ``x`` into ``y``. Launches prepared for other input strides
    (``Config.nhwc_input``) get a copy of ``x`` in those strides first; a shuffled store
    prepared for aligned rows runs unaligned into an ``out`` whose rows are not."""
    fn = kernel()
    ys = y.stride()
    if prepared and tuple(prepared[0][1][-4:]) != x.stride():
        x = torch.empty_strided(x.shape, prepared[0][1][-4:], dtype=x.dtype,
                                device=x.device).copy_(x)
    for grid, args, meta in prepared:
        wpack, bias_t, c, fh, fw, sbias, *ints = args
        if meta["ALIGN"] > 1 and not _stores_aligned(y, meta["ALIGN"]):
            meta = {**meta, "ALIGN": 1}
        fn[grid](x, wpack, y, bias_t, c, fh, fw, sbias, *ints, *ys, **meta)
    return y


def new_output(x: Tensor, channels: int, out_size: IntPair) -> Tensor:
    """The output tensor: channels_last when ``x`` is (and is not also contiguous), else NCHW."""
    fmt = torch.channels_last if (x.is_contiguous(memory_format=torch.channels_last)
                                  and not x.is_contiguous()) else torch.contiguous_format
    return torch.empty((x.shape[0], channels, *out_size), dtype=x.dtype, device=x.device,
                       memory_format=fmt)


def check_out(out: Tensor, x: Tensor, channels: int, out_size: IntPair) -> None:
    """``out`` must have the output's shape, dtype and device and must not overlap ``x``."""
    want = (x.shape[0], channels, *out_size)
    if tuple(out.shape) != want or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(f"out must be a {x.dtype} tensor of shape {want} on {x.device}, got "
                         f"{out.dtype} {tuple(out.shape)} on {out.device}")
    if _span(out) > MAX_ELEMENTS:
        raise ValueError("out exceeds 32-bit indexing (2**31 elements)")


def run_config(x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
               out_size: IntPair, config: tp.Config, out: Tensor | None = None) -> Tensor:
    """The kernel under one explicit ``config`` (the tuner and the tests use this)."""
    y = new_output(x, weight.shape[1], out_size) if out is None else out
    return launch_all(prepare(x, weight, bias, stride, padding, out_size, config), x, y)


def deconv2d_revd2_triton(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair, out: Tensor | None = None,
) -> Tensor:
    """REVD2 in Triton: ``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` → ``(N, C, *out_size)``.

    Same contract as the references in :mod:`upconv.algorithms` (``padding`` = crops
    ``(top, bottom, left, right)``, ``bias`` ``(C,)`` or periodic ``(C, bh, bw)``), plus
    ``out``: a preallocated output to write into (any strides). Check
    :func:`unsupported_reason` first. Block sizes are tuned per shape on first use
    (:mod:`upconv.kernels.triton_tune`). It runs inside the operator ``upconv::deconv2d``
    (:mod:`upconv.ops`), which ``torch.compile`` keeps opaque: compiled graphs call it as they
    call any extern kernel.
    """
    from .triton_tune import prepared_call

    c = weight.shape[1]
    if out is not None:
        check_out(out, x, c, out_size)
    y = new_output(x, c, out_size) if out is None else out
    return launch_all(prepared_call(x, weight, bias, stride, padding, out_size), x, y)


deconv2d_revd2_triton.takes_out = True  # type: ignore[attr-defined]


def record_fallback(reason: str) -> None:
    """Count a call that could not use the kernel (see :data:`FALLBACKS`)."""
    if reason not in FALLBACKS:
        log.info("REVD2 Triton kernel not used: %s", reason)
    FALLBACKS[reason] += 1

