"""Planning and packing of the Triton REVD2 kernel (pure PyTorch), its tuner's candidate list,
and how the package behaves without Triton."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import upconv
from upconv.kernels import triton_plan as tp
from upconv.kernels import triton_tune as tt
from upconv.shapes import phase_outputs, resize_deconv_geometry, subpixel_deconv_geometry

SRC = Path(__file__).parent.parent / "src"


def test_resize_phases_reach_unequal_tap_counts():
    """D-NN ×3, K = 3: Kd = 5 taps over stride 3 reach phases 0, 1 with 2 taps, phase 2 with 1."""
    geo = resize_deconv_geometry(3, 3)
    out = geo.output_size(4, 5)
    groups = tp.tap_groups(2, geo.kernel_size, geo.stride, geo.padding, out)
    assert [(taps, len(slots)) for taps, slots in groups] == [
        ((2, 2), 2 * 4), ((2, 1), 2 * 2), ((1, 2), 2 * 2), ((1, 1), 2 * 1)]
    assert tp.mixed_taps(geo.kernel_size, geo.stride, geo.padding, out)
    sp = subpixel_deconv_geometry(3, 3)
    assert not tp.mixed_taps(sp.kernel_size, sp.stride, sp.padding, out)
    assert tp.tap_groups(1, sp.kernel_size, sp.stride, sp.padding, out)[0][0] == (3, 3)


def test_phases_without_taps_and_without_outputs():
    """Stride 5 > kernel 3: phases 3, 4 reach no tap (bias only); a 1-wide output has one
    phase per axis."""
    assert tp.phase_taps(3, 5, 0, 20) == [(0, 1), (1, 1), (2, 1), (3, 0), (4, 0)]
    assert tp.phase_taps(3, 5, 2, 1) == [(2, 1)]


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 9), s=st.integers(1, 6), pad=st.integers(0, 8),
       out_len=st.integers(1, 30))
def test_phase_grid_covers_every_output(k, s, pad, out_len):
    lo, hi = tp.phase_grid(s, pad, out_len)
    seen = set()
    for f, _ in tp.phase_taps(k, s, pad, out_len):
        o0, q0, count = phase_outputs(f, s, pad, out_len)
        assert lo <= q0 and q0 + count <= hi
        seen |= {o0 + s * i for i in range(count)}
    assert seen == set(range(out_len))


@pytest.mark.parametrize("merged", [True, False])
def test_launch_slots_pad_blocks_and_split_per_pattern(merged):
    geo = resize_deconv_geometry(3, 3)
    out = geo.output_size(4, 5)
    groups = tp.tap_groups(3, geo.kernel_size, geo.stride, geo.padding, out)
    launches = tp.launch_slots(groups, merged, 16, torch.device("cpu"))
    assert len(launches) == (1 if merged else 4)
    for s in launches:
        assert s.c.numel() % 16 == 0 and s.c.dtype == torch.int32
        real = s.c >= 0
        assert int(real.sum()) == (27 if merged else s.c.numel() - int((~real).sum()))
        assert bool((s.c[real.logical_not()] == -1).all())
    assert sum(int((s.c >= 0).sum()) for s in launches) == 27
    assert launches[0].taps == (2, 2)
    if not merged:
        assert [s.taps for s in launches] == [(2, 2), (2, 1), (1, 2), (1, 1)]


def test_packed_weights_hold_each_slots_taps_and_zeros_elsewhere():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 2, 5, 4, generator=g)  # Cin 5, C 2, Kh 5, Kw 4
    stride, padding, out = (3, 2), (1, 2, 0, 1), (9, 7)
    groups = tp.tap_groups(2, (5, 4), stride, padding, out)
    slots, = tp.launch_slots(groups, True, 16, torch.device("cpu"))
    packed = tp.pack_weights(w, slots, stride, 16, 16, torch.float64)
    th, tw = slots.taps
    assert packed.shape == (slots.c.numel() // 16, th, tw, 16, 16)
    for j in range(slots.c.numel()):
        b, pos = divmod(j, 16)
        c, fh, fw = int(slots.c[j]), int(slots.fh[j]), int(slots.fw[j])
        for t_h in range(th):
            for t_w in range(tw):
                got = packed[b, t_h, t_w, :, pos]
                kh, kw = fh + stride[0] * t_h, fw + stride[1] * t_w
                if c >= 0 and kh < 5 and kw < 4:
                    torch.testing.assert_close(got[:5], w[:, c, kh, kw].double())
                else:
                    assert bool((got[:5] == 0).all())
                assert bool((got[5:] == 0).all())  # channel padding


def test_slot_bias_is_the_periodic_bias_at_each_phase():
    """A sub-pixel layer's periodic bias is constant per slot: slot (c, fh, fw) holds outputs
    o ≡ fh − top (mod r), whose bias is the conv bias of channel c·r² + a·r + b."""
    r, bc = 3, torch.arange(2 * 9, dtype=torch.float32)
    geo = subpixel_deconv_geometry(3, r)
    bias = upconv.bias_shuffle(bc, r)
    out = geo.output_size(4, 4)
    assert tp.bias_mode(bias, geo.stride) == tp.BIAS_SLOT
    assert tp.bias_mode(torch.zeros(2), geo.stride) == tp.BIAS_SLOT
    assert tp.bias_mode(torch.zeros(2, 2, 2), geo.stride) == tp.BIAS_GATHER
    assert tp.bias_mode(None, geo.stride) == tp.BIAS_NONE
    slots, = tp.launch_slots(tp.tap_groups(2, geo.kernel_size, geo.stride, geo.padding, out),
                             True, 32, torch.device("cpu"))
    got = tp.slot_bias(bias, slots, geo.padding)
    for j in range(slots.c.numel()):
        c, fh, fw = int(slots.c[j]), int(slots.fh[j]), int(slots.fw[j])
        if c < 0:
            assert got[j] == 0
            continue
        a, b = (fh - geo.padding[0]) % r, (fw - geo.padding[2]) % r
        assert got[j] == bc[c * r * r + a * r + b]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cin,slots,grid_w,mixed", [
    (32, 4, 1920, False), (64, 48, 960, True), (64, 256, 960, False), (16, 12, 960, False),
    (3, 2, 5, True), (1, 1, 1, False), (80, 200, 30, True)])
@pytest.mark.parametrize("shuffle", [None, (2, 2), (4, 4)])
@pytest.mark.parametrize("nchw", [False, True])
def test_candidate_configs_are_valid_kernel_variants(dtype, cin, slots, grid_w, mixed,
                                                     shuffle, nchw):
    """Every candidate is a power-of-two tile that ``tl.dot`` accepts (M, N, K ≥ 16) or an FMA
    tile small enough for registers; slot blocks never exceed 128; split only when mixed;
    a shuffled store only where asked for, on blocks of whole channels; a channels_last copy
    of the input only for NCHW inputs, on pipelined tiles that are candidates as they are."""
    shuffle = None if mixed else shuffle
    configs = tt.candidate_configs(dtype, cin, slots, grid_w, mixed, shuffle, nchw)
    assert configs and len(configs) == len(set(configs)) and len(configs) <= 12
    via = [c for c in configs if c.nhwc_input]
    assert bool(via) == nchw and len(via) <= 2 and not configs[0].nhwc_input
    assert all(c.flat and c.num_stages == 3 and c.dot for c in via)
    plain = {dataclasses.replace(c, nhwc_input=False) for c in via}
    assert plain <= set(configs)
    assert all(not c.shuffle or c.block_n % (shuffle[0] * shuffle[1]) == 0 for c in configs)
    assert any(c.shuffle for c in configs) == (shuffle is not None and any(
        c.block_n % (shuffle[0] * shuffle[1]) == 0 for c in configs if c.dot))
    for c in configs:
        for v in (c.block_h, c.block_w, c.block_n, c.block_k):
            assert v & (v - 1) == 0
        if c.dot:
            assert min(c.block_m, c.block_n, c.block_k) >= 16 and c.block_n <= 128
            assert c.block_m * c.block_n <= 16384 * (c.num_warps // 4)
        else:
            assert c.block_m * c.block_n * c.block_k <= 8192
    assert any(not c.merged for c in configs) == mixed
    # dots first (what runs untuned); an FMA candidate only where K would be mostly zeros
    assert configs[0].dot and any(not c.dot for c in configs) == (cin < 16)


@pytest.mark.parametrize("kernel,stride,padding,out,want", [
    ((6, 6), (2, 2), (2, 2, 2, 2), (20, 30), (2, 2)),  # ×2 sub-pixel, 3×3 conv
    ((12, 12), (4, 4), (4, 4, 4, 4), (40, 60), (4, 4)),  # ×4 head
    ((6, 4), (2, 1), (2, 2, 1, 1), (20, 10), (2, 1)),  # rows only
    ((9, 9), (3, 3), (3, 3, 3, 3), (30, 30), None),  # ×3: not a power of two
    ((4, 4), (2, 2), (1, 1, 1, 1), (20, 30), (2, 2)),  # resize ×2: every phase 2×2 taps
    ((5, 5), (3, 3), (1, 1, 1, 1), (30, 30), None),  # resize ×3: mixed windows
    ((3, 3), (1, 1), (1, 1, 1, 1), (10, 10), None),  # stride 1: nothing to shuffle
    ((6, 6), (2, 2), (3, 2, 2, 2), (1, 30), None),  # one output row: phase row 1 empty
])
def test_shuffle_phases_needs_every_phase_in_one_window(kernel, stride, padding, out, want):
    assert tp.shuffle_phases(kernel, stride, padding, out) == want


def test_without_triton_everything_else_imports_and_runs():
    """Triton absent: ``import upconv`` and the CPU paths work, ``auto`` still lists its
    candidates, and the kernel reports why it cannot run."""
    code = textwrap.dedent("""
        import sys

        class NoTriton:
            def find_spec(self, name, path=None, target=None):
                if name == "triton" or name.startswith("triton."):
                    raise ImportError("triton is blocked for this test")

        sys.meta_path.insert(0, NoTriton())
        import torch
        import upconv
        from upconv import autotune
        from upconv.kernels import triton_revd2

        x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 1, 4, 4)
        print(triton_revd2.unsupported_reason(x, w, None))
        y = upconv.deconv2d(x, w, None, 2, 1, algorithm="revd2")
        torch.testing.assert_close(y, torch.nn.functional.conv_transpose2d(x, w, None, 2, 1),
                                   rtol=1e-4, atol=1e-4)
        assert "revd2-triton" in autotune.candidates()
        assert "triton" not in sys.modules
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["triton", "is", "not", "installed", "ok"]


@pytest.mark.parametrize("dtype,cin,slots,shuffle,want", [
    (torch.float32, 64, 256, (2, 2), tp.Config(4, 64, 64, 16, True, num_warps=8, num_stages=4,
                                                flat=True, shuffle=True)),  # G3
    (torch.float32, 64, 48, (4, 4), tp.Config(4, 64, 64, 32, True, num_warps=4, num_stages=4,
                                               flat=True, shuffle=True)),  # G2
    (torch.float16, 64, 48, (4, 4), tp.Config(1, 64, 64, 64, True, num_warps=4, num_stages=4,
                                               flat=True, shuffle=True)),  # G2
    (torch.float16, 64, 48, None, tp.Config(1, 64, 64, 64, True, num_warps=4, num_stages=4,
                                             flat=True)),  # ×3 phases: stored plainly
])
def test_candidates_include_what_the_h200_sweep_found_faster(dtype, cin, slots, shuffle, want):
    assert want in tt.candidate_configs(dtype, cin, slots, 960, False, shuffle, False)
    # not on grids narrower than a tile row, and not for one output channel (G1: 4 slots)
    assert want not in tt.candidate_configs(dtype, cin, slots, 30, False, shuffle, False)
    g1 = tt.candidate_configs(dtype, 32, 4, 1920, False, (2, 2), False)
    assert [c.label() for c in g1] == [c.label() for c in tt.candidate_configs(
        dtype, 32, 4, 1920, False, (2, 2), False) if c.block_h != 1 and not (
            c.num_stages == 4 and c.shuffle)]
