"""The Triton kernel compiles for a Hopper GPU (sm_90) without one: Triton's compiler and its
bundled ptxas turn each representative variant into a cubin, within H100's shared memory.

The interpreter tests check what the kernel computes; these check that the compiled path
accepts every code path the launcher can choose (tensor-core dot per dtype, the float32
TF32 and 3×TF32 dots, FMA, unrolled and pipelined tap loops, channels_last, uneven channel steps,
the tile shuffled into output rows before its store, an NCHW input read through its
channels_last copy, gathered bias, phases split by tap pattern)."""

from __future__ import annotations

import pytest
import torch
from triton_aot import compile_call

import upconv
from upconv.functional import check_deconv
from upconv.kernels import triton_plan as tp
from upconv.shapes import resize_deconv_geometry, subpixel_deconv_geometry

#: Shared memory one block may use on an H100 / H200 (227 KiB).
MAX_SHARED = 227 * 1024


@pytest.fixture(scope="module", autouse=True)
def fresh_triton_cache(tmp_path_factory):
    """Compile for real each run (Triton would otherwise load earlier cubins from ~/.triton)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_CACHE_DIR", str(tmp_path_factory.mktemp("triton-cache")))
        yield


def sub_pixel(cin, c, r, dtype, layout="nchw"):
    x = torch.randn(1, cin, 6, 160).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    wd = upconv.weight_shuffle(torch.randn(c * r * r, cin, 3, 3), r).to(dtype)
    bd = upconv.bias_shuffle(torch.randn(c * r * r), r).to(dtype)
    geo = subpixel_deconv_geometry(3, r)
    return check_deconv(x, wd, bd, geo.stride, geo.padding)


VARIANTS = {
    "fp16 dot, pipelined loop (G1)": (
        lambda: sub_pixel(32, 1, 2, torch.float16), tp.Config(2, 64, 16, 32, True,
                                                              num_stages=3, flat=True)),
    "fp16 dot, unrolled taps, channels_last": (
        lambda: sub_pixel(32, 1, 2, torch.float16, "channels_last"),
        tp.Config(2, 64, 16, 32, True)),
    "bf16 dot, 64 slots (G2)": (
        lambda: sub_pixel(64, 3, 4, torch.bfloat16),
        tp.Config(2, 64, 64, 64, True, num_stages=3, flat=True)),
    "fp32 3xTF32 dot, 128 slots, 8 warps (G3)": (
        lambda: sub_pixel(64, 64, 2, torch.float32),
        tp.Config(2, 64, 128, 32, True, num_warps=8, num_stages=3, flat=True), "ieee"),
    "fp32 TF32 dot, 64 slots (G2)": (
        lambda: sub_pixel(64, 3, 4, torch.float32),
        tp.Config(4, 64, 64, 32, True, num_warps=8, num_stages=4, flat=True), "tf32"),
    "fp16 dot, loop not pipelined, 8 warps, channels_last": (
        lambda: sub_pixel(32, 1, 2, torch.float16, "channels_last"),
        tp.Config(4, 64, 16, 32, True, num_warps=8, num_stages=1, flat=True)),
    "fp16 dot, tile shuffled into output rows (G1)": (
        lambda: sub_pixel(32, 1, 2, torch.float16),
        tp.Config(2, 64, 16, 32, True, num_stages=3, flat=True, shuffle=True)),
    "fp32 TF32 dot, large tile shuffled, channels_last (G2)": (
        lambda: sub_pixel(64, 3, 4, torch.float32, "channels_last"),
        tp.Config(4, 64, 64, 32, True, num_warps=8, num_stages=3, flat=True, shuffle=True),
        "tf32"),
    "fp16 dot, NCHW input read through its channels_last copy (G1)": (
        lambda: sub_pixel(32, 1, 2, torch.float16),
        tp.Config(4, 64, 16, 32, True, num_stages=3, flat=True, shuffle=True,
                  nhwc_input=True)),
    "fp32 TF32 dot, 64-slot blocks of 16-channel steps, four stages (G3, swept)": (
        lambda: sub_pixel(64, 64, 2, torch.float32, "channels_last"),
        tp.Config(4, 64, 64, 16, True, num_warps=8, num_stages=4, flat=True, shuffle=True),
        "tf32"),
    "fp32 TF32 dot, large tile, 4 warps, four stages (G2, swept)": (
        lambda: sub_pixel(64, 3, 4, torch.float32, "channels_last"),
        tp.Config(4, 64, 64, 32, True, num_warps=4, num_stages=4, flat=True, shuffle=True),
        "tf32"),
    "fp16 dot, one-row tile, four stages (G2, swept)": (
        lambda: sub_pixel(64, 3, 4, torch.float16, "channels_last"),
        tp.Config(1, 64, 64, 64, True, num_warps=4, num_stages=4, flat=True, shuffle=True)),
    "fp32 FMA, few channels": (
        lambda: sub_pixel(3, 1, 2, torch.float32), tp.Config(2, 64, 4, 4, False, flat=True)),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_compiles_for_sm90(name):
    make, config, *precision = VARIANTS[name]
    call = make()
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = precision[0] if precision else before
    try:
        kernels = compile_call(call.x, call.weight, call.bias, call.stride, call.padding,
                               call.out_size, config)
    finally:
        conv.fp32_precision = before
    assert kernels and all(0 < k.metadata.shared <= MAX_SHARED for k in kernels)
    assert all(k.asm.get("cubin") for k in kernels)


def test_split_phases_gathered_bias_and_uneven_channels_compile():
    """D-NN ×3 split per tap pattern (four launches with windows 2×2, 2×1, 1×2, 1×1), a
    periodic bias whose period does not divide the stride (gathered per output), and 80 input
    channels in steps of 32 (the last one masked)."""
    x = torch.randn(1, 80, 5, 64, dtype=torch.float16)
    wd = upconv.weight_convolution(torch.randn(2, 80, 3, 3), 3).half()
    geo = resize_deconv_geometry(3, 3)
    bias = torch.randn(2, 2, 2, dtype=torch.float16)
    call = check_deconv(x, wd, bias, geo.stride, geo.padding)
    config = tp.Config(2, 64, 16, 32, True, merged=False, num_stages=3, flat=True)
    kernels = compile_call(call.x, call.weight, call.bias, call.stride, call.padding,
                           call.out_size, config)
    assert len(kernels) == 4 and all(k.metadata.shared <= MAX_SHARED for k in kernels)
