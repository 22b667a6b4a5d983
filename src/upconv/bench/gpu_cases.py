"""What the GPU suite times for one layer in one dtype: cuDNN's trained forms, PyTorch's
``conv_transpose2d``, and upconv's REVD2 Triton kernel, TDC and ``auto``, as zero-argument
callables; and the trained forms in float32 every case is checked against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..functional import check_deconv, deconv2d, resize_conv2d, sub_pixel_conv2d
from .zoo import Layer, LayerTensors


@dataclass(frozen=True)
class GpuCase:
    """One timed implementation; ``fn()`` returns the layer's output."""

    name: str
    function: str  # "SP" (sub-pixel / D-SP) or "NN" (resize conv / D-NN)
    family: str  # "baseline" or "upconv"
    fn: Callable[[], torch.Tensor]
    expect: str = ""  # key into :func:`expected`; defaults to ``function``
    note: str = ""
    choice: Callable[[], str] | None = None  # auto: the candidate it runs

    @property
    def expected_key(self) -> str:
        return self.expect or self.function


CL = torch.channels_last
#: The baseline row that leaves out the D-SP weights' periodic bias (less than the layer).
CONVT_DSP_NO_BIAS = "conv_transpose2d (D-SP weights)"


def baseline_cases(layer: Layer, t: LayerTensors) -> list[GpuCase]:
    """cuDNN C-SP (NCHW and channels_last), C-NN (nearest resize + conv), and PyTorch's
    ``conv_transpose2d`` on both deconvolution weights."""
    x, r, pad = t.x, layer.r, layer.k // 2
    x_cl, w_cl = x.contiguous(memory_format=CL), t.w_sp.contiguous(memory_format=CL)
    sp, nn = t.geo_sp, t.geo_nn
    return [
        GpuCase("cuDNN conv+pixel_shuffle (NCHW)", "SP", "baseline",
                lambda: F.pixel_shuffle(F.conv2d(x, t.w_sp, t.b_sp, padding=pad), r)),
        GpuCase("cuDNN conv+pixel_shuffle (channels_last)", "SP", "baseline",
                lambda: F.pixel_shuffle(F.conv2d(x_cl, w_cl, t.b_sp, padding=pad), r)),
        GpuCase(CONVT_DSP_NO_BIAS, "SP", "baseline",
                lambda: F.conv_transpose2d(x, t.wd_sp, None, sp.stride, sp.symmetric_padding),
                "SP-nobias", "periodic bias not added (favours the baseline)"),
        GpuCase("cuDNN interpolate(nearest)+conv", "NN", "baseline",
                lambda: F.conv2d(F.interpolate(x, scale_factor=r, mode="nearest"), t.w_nn,
                                 t.b_nn, padding=pad)),
        GpuCase("conv_transpose2d (D-NN weights)", "NN", "baseline",
                lambda: F.conv_transpose2d(x, t.wd_nn, t.b_nn, nn.stride, nn.symmetric_padding)),
    ]


def upconv_cases(t: LayerTensors) -> list[GpuCase]:
    """``upconv.deconv2d`` with ``revd2`` (the Triton kernel on CUDA), ``tdc`` and ``auto``;
    D-SP also on a channels_last input (the kernel reads it in place)."""
    x_cl = t.x.contiguous(memory_format=CL)
    # tdc on channels_last too: the conv + shuffle that `auto` weighs for such an input,
    # beside cuDNN's own channels_last row
    plan = [("revd2", "SP", t.x), ("revd2", "SP", x_cl), ("revd2", "NN", t.x),
            ("tdc", "SP", t.x), ("tdc", "SP", x_cl), ("tdc", "NN", t.x),
            ("auto", "SP", t.x), ("auto", "SP", x_cl), ("auto", "NN", t.x)]
    cases = []
    for algo, fun, x in plan:
        tag = ", channels_last" if x is x_cl else ""
        cases.append(GpuCase(f"upconv {algo} (D-{fun}{tag})", fun, "upconv",
                             _deconv(x, t, fun, algo),
                             choice=_auto_choice(x, t, fun) if algo == "auto" else None))
    return cases


def _weights(t: LayerTensors, fun: str):
    return (t.wd_sp, t.bd_sp, t.geo_sp) if fun == "SP" else (t.wd_nn, t.b_nn, t.geo_nn)


def _deconv(x: torch.Tensor, t: LayerTensors, fun: str, algo: str) -> Callable[[], torch.Tensor]:
    wd, b, geo = _weights(t, fun)
    return lambda: deconv2d(x, wd, b, geo.stride, geo.padding, algorithm=algo)


def _auto_choice(x: torch.Tensor, t: LayerTensors, fun: str) -> Callable[[], str]:
    from .. import autotune

    wd, b, geo = _weights(t, fun)

    def choice() -> str:
        with torch.no_grad():
            return autotune.choose(check_deconv(x, wd, b, geo.stride, geo.padding))

    return choice


def expected(layer: Layer, t: LayerTensors) -> dict[str, torch.Tensor]:
    """The trained forms in float32 (TF32 off) from the same rounded weights: C-SP with and
    without its bias, C-NN."""
    x, r = t.x.float(), layer.r
    with _exact_fp32():
        return {"SP": sub_pixel_conv2d(x, t.w_sp.float(), t.b_sp.float(), r),
                "SP-nobias": sub_pixel_conv2d(x, t.w_sp.float(), None, r),
                "NN": resize_conv2d(x, t.w_nn.float(), t.b_nn.float(), r)}


class _exact_fp32:
    """cuDNN convolutions in true float32 (PyTorch lets them use TF32 by default)."""

    def __enter__(self) -> None:
        self.before = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        torch.backends.cudnn.allow_tf32 = self.before


#: Largest error, relative to the output's largest magnitude, that still counts as the same
#: function: float32 cuDNN runs in TF32 by default (10-bit mantissa).
TOLERANCE = {torch.float32: 5e-3, torch.float16: 2e-2, torch.bfloat16: 6e-2}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got − want| / max |want|."""
    return float((got.float() - want).abs().max()) / (float(want.abs().max()) + 1e-12)
