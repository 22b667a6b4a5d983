"""The REVD2 Triton kernel compiled on a real CUDA device (skipped where there is none).

``benchmarks/gpu_check.sh`` runs these first on the GPU machine. They check every candidate
configuration the tuner may pick for the benchmark layers' channel counts, random geometries
through ``upconv.deconv2d``, the tuner, ``auto``, fallbacks, ``out=``, full-size offsets and
``torch.compile``. References are float64 on the CPU.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import conv_transpose2d_oracle
from strategies import deconv_problems

import upconv
from upconv import autotune
from upconv.functional import check_deconv, implementation
from upconv.kernels import triton_revd2 as tr
from upconv.kernels import triton_tune as tt
from upconv.shapes import resize_deconv_geometry, subpixel_deconv_geometry

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

DEV = "cuda"
#: dtype → (rtol, atol) against float64: fp32 accumulation, one rounding of the result.
TOL = {torch.float32: (1e-4, 1e-4), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 2e-2)}


def oracle(x, w, b, stride, padding, output_padding=(0, 0)):
    cpu = [None if t is None else t.detach().double().cpu() for t in (x, w, b)]
    return conv_transpose2d_oracle(*cpu, stride, padding, output_padding)


@contextlib.contextmanager
def conv_fp32_precision(value: str):
    """PyTorch's float32 setting for convolutions ("tf32" or "ieee"), restored after."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is None:  # PyTorch before the per-backend settings
        before = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = value == "tf32"
    else:
        before = conv.fp32_precision
        conv.fp32_precision = value
    try:
        yield
    finally:
        if conv is None:
            torch.backends.cudnn.allow_tf32 = before
        else:
            conv.fp32_precision = before


@pytest.fixture(autouse=True)
def _float32_as_ieee():
    """float32 results are checked at float32 accuracy (3×TF32); the TF32 default has a
    test of its own."""
    with conv_fp32_precision("ieee"):
        yield


def assert_matches(got, want, dtype):
    rtol, atol = TOL[dtype]
    assert got.dtype == dtype and got.is_cuda
    torch.testing.assert_close(got.double().cpu(), want, rtol=rtol, atol=atol)


def layer_weights(cin, c, r, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    wc = torch.randn(c * r * r, cin, 3, 3, generator=g) / (3 * cin**0.5)
    bc = torch.randn(c * r * r, generator=g)
    wn = torch.randn(c, cin, 3, 3, generator=g) / (3 * cin**0.5)
    bn = torch.randn(c, generator=g)
    put = lambda t: t.to(DEV, dtype)  # noqa: E731
    return [("D-SP", put(upconv.weight_shuffle(wc, r)), put(upconv.bias_shuffle(bc, r)),
             subpixel_deconv_geometry(3, r)),
            ("D-NN", put(upconv.weight_convolution(wn, r)), put(bn),
             resize_deconv_geometry(3, r))]


def run_candidates(configs, x, wd, bd, geo, out_size, want, dtype):
    """Every configuration either gives the right output or is refused for lack of resources
    (too much shared memory: the tuner skips those); the first one must run."""
    from triton.runtime.errors import OutOfResources

    refused = []
    for config in configs:
        try:
            got = tr.run_config(x, wd, bd, geo.stride, geo.padding, out_size, config)
        except OutOfResources as err:
            refused.append((config.label(), str(err)))
            continue
        assert_matches(got, want, dtype)
    assert configs[0].label() not in dict(refused), refused
    return refused


def candidates(call):
    return tt.call_candidates(call.x, call.weight, call.stride, call.padding, call.out_size)


# the benchmark layers' channel counts (Cin, C, r, N) on a 37 × 160 input: several tiles,
# partial tiles at the right and bottom edges
ZOO = {"G1/L2 32→1 ×2": (32, 1, 2, 1), "G2/L4 64→3 ×4": (64, 3, 4, 1),
       "G3/L5 64→64 ×2": (64, 64, 2, 1), "G4/L6 16→3 ×2": (16, 3, 2, 2)}


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("name", list(ZOO))
def test_every_candidate_configuration(name, dtype):
    """Every configuration the tuner may choose, on D-SP and D-NN weights (NCHW), and on a
    channels_last input the first, the first stored shuffled, and the four-stage shuffled
    tiles that the H200 sweep found (python -m upconv.bench.gpu_sweep). The input's row
    stride is a multiple of 16, like the benchmark layers', so the kernels compiled here are
    the ones the suite then finds in Triton's cache."""
    cin, c, r, n = ZOO[name]
    x = torch.randn(n, cin, 37, 160, generator=torch.Generator().manual_seed(1)).to(DEV, dtype)
    for _, wd, bd, geo in layer_weights(cin, c, r, dtype):
        call = check_deconv(x, wd, bd, geo.stride, geo.padding)
        want = oracle(x, wd, bd, geo.stride, geo.padding)
        configs = candidates(call)
        run_candidates(configs, x, wd, bd, geo, call.out_size, want, dtype)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        shuffled = [c for c in configs if c.shuffle and not c.nhwc_input]
        run_candidates(configs[:1] + shuffled[:1] + [c for c in shuffled[1:]
                                                     if c.num_stages == 4],
                       x_cl, wd, bd, geo, call.out_size, want, dtype)


def test_bfloat16_layers():
    x = torch.randn(2, 16, 21, 70, generator=torch.Generator().manual_seed(2)).to(
        DEV, torch.bfloat16)
    for _, wd, bd, geo in layer_weights(16, 3, 2, torch.bfloat16):
        call = check_deconv(x, wd, bd, geo.stride, geo.padding)
        run_candidates(candidates(call)[:2], x, wd, bd, geo, call.out_size,
                       oracle(x, wd, bd, geo.stride, geo.padding), torch.bfloat16)


@settings(max_examples=12, deadline=None)
@given(p=deconv_problems(max_kernel=6, max_stride=4),
       dtype=st.sampled_from([torch.float32, torch.float16]),
       fmt=st.sampled_from(["nchw", "channels_last"]))
def test_random_geometries_through_deconv2d(p, dtype, fmt):
    """Any stride, crops, output padding and bias kind through ``upconv.deconv2d`` on CUDA
    (first candidate configuration: each new shape would otherwise be tuned)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(p["n"], p["cin"], p["h"] + 9, p["w"] + 17, generator=g).to(DEV, dtype)
    if fmt == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(p["cin"], p["c"], p["kh"], p["kw"], generator=g).to(DEV, dtype)
    b = {"none": None, "channel": torch.randn(p["c"], generator=g),
         "periodic": torch.randn(p["c"], *p["period"], generator=g)}[p["bias"]]
    b = None if b is None else b.to(DEV, dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tt.TUNE_ENV, "0")
        got = upconv.deconv2d(x, w, b, p["stride"], p["padding"], p["output_padding"])
    assert_matches(got, oracle(x, w, b, p["stride"], p["padding"], p["output_padding"]), dtype)
    # the operator's layout rule: a channels_last CUDA input gives a channels_last output
    cl_in = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert got.is_contiguous(memory_format=torch.channels_last if cl_in else
                             torch.contiguous_format)


def test_revd2_on_cuda_is_the_triton_kernel_and_falls_back_with_a_reason():
    x = torch.randn(1, 4, 9, 11, device=DEV)
    w = torch.randn(4, 2, 4, 4, device=DEV)
    assert implementation(check_deconv(x, w, None, 2, 1), "revd2") is tr.deconv2d_revd2_triton
    xd, wd = x.double(), w.double()
    got = upconv.deconv2d(xd, wd, None, 2, 1)  # float64: the readable reference
    assert any("float32, float16 or bfloat16" in r for r in tr.FALLBACKS)
    torch.testing.assert_close(got.cpu(), oracle(x, w, None, (2, 2), (1, 1, 1, 1)))
    # autograd: the operator's registered backward gives the gradients (the forward runs
    # below autograd, so it may still be the kernel)
    wg = w.clone().requires_grad_()
    y = upconv.deconv2d(x, wg, None, 2, 1)
    y.backward(torch.ones_like(y))
    wo = w.detach().double().cpu().requires_grad_()
    yo = torch.nn.functional.conv_transpose2d(x.double().cpu(), wo, None, 2, 1)
    yo.backward(torch.ones_like(yo))
    assert_matches(y.detach(), yo.detach(), torch.float32)
    torch.testing.assert_close(wg.grad.double().cpu(), wo.grad, rtol=1e-4, atol=1e-4)


def test_float32_follows_pytorchs_tf32_setting_for_convolutions():
    """TF32 by default (as cuDNN convolutions), 3×TF32 when convolutions are set to IEEE."""
    x = torch.randn(2, 32, 40, 72, generator=torch.Generator().manual_seed(3)).to(DEV)
    _, wd, bd, geo = layer_weights(32, 3, 2, torch.float32)[0]
    want = oracle(x, wd, bd, geo.stride, geo.padding)
    scale = float(want.abs().max())
    errors = {}
    for precision in ("tf32", "ieee"):
        with conv_fp32_precision(precision):
            assert tr.float32_as_tf32() is (precision == "tf32")
            got = upconv.deconv2d(x, wd, bd, geo.stride, geo.padding, algorithm="revd2")
        errors[precision] = float((got.double().cpu() - want).abs().max()) / scale
    assert errors["ieee"] < 1e-5 < errors["tf32"] < 5e-3, errors


def test_tuner_times_every_candidate_and_caches_the_choice(tmp_path, monkeypatch):
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    tt.clear_memory()
    x = torch.randn(1, 32, 64, 256, device=DEV, dtype=torch.float16)
    _, wd, bd, geo = layer_weights(32, 1, 2, torch.float16)[0]
    call = check_deconv(x, wd, bd, geo.stride, geo.padding)
    before = len(tt.TUNING_LOG)
    config = tt.choose_config(x, wd, bd, geo.stride, geo.padding, call.out_size)
    entry, = tt.TUNING_LOG[before:]
    timed = {k: v for k, v in entry["ms"].items() if not k.endswith("first call s")}
    assert set(timed) == {c.label() for c in candidates(call)}
    assert all(isinstance(v, float) for v in timed.values()), timed  # every candidate ran
    assert entry["choice"] == config.label() and timed[config.label()] == min(timed.values())
    assert tt.choose_config(x, wd, bd, geo.stride, geo.padding, call.out_size) == config
    assert len(tt.TUNING_LOG) == before + 1
    data = json.loads((tmp_path / tt.CACHE_FILE).read_text())
    (key, saved), = data.items()
    assert torch.cuda.get_device_name() in key and saved["config"]["block_n"] == config.block_n
    tt.clear_memory()
    assert tt.choose_config(x, wd, bd, geo.stride, geo.padding, call.out_size) == config
    assert len(tt.TUNING_LOG) == before + 1  # from disk, not re-tuned


def test_auto_on_cuda_weighs_the_device_candidates(tmp_path, monkeypatch):
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    autotune.clear_memory()
    x = torch.randn(1, 16, 40, 96, device=DEV, dtype=torch.float16)
    _, wd, bd, geo = layer_weights(16, 3, 2, torch.float16)[0]
    call = check_deconv(x, wd, bd, geo.stride, geo.padding)
    assert autotune.eligible(call) == ["revd2-triton", "tdc-torch", "tdc-torch-nhwc",
                                       "stdd-torch"]
    got = upconv.deconv2d(x, wd, bd, geo.stride, geo.padding, algorithm="auto")
    assert_matches(got, oracle(x, wd, bd, geo.stride, geo.padding), torch.float16)
    data = json.loads((tmp_path / autotune.CACHE_FILE).read_text())
    (key, entry), = data.items()
    assert torch.cuda.get_device_name() in key
    assert set(entry["seconds"]) == set(autotune.eligible(call))
    assert entry["choice"] == autotune.pick(entry["seconds"])
    autotune.clear_memory()


def test_out_argument_and_channels_last_output():
    x = torch.randn(2, 8, 13, 29, device=DEV).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 3, 6, 6, device=DEV)
    b = torch.randn(3, 2, 2, device=DEV)
    call = check_deconv(x, w, b, 2, (2, 3, 1, 2), 1)
    want = oracle(x, w, b, (2, 2), (2, 3, 1, 2), (1, 1))
    y = tr.deconv2d_revd2_triton(x, w, b, call.stride, call.padding, call.output_padding,
                                 call.out_size)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_matches(y, want, torch.float32)
    big = torch.zeros(2, 5, call.out_size[0] + 2, call.out_size[1] + 4, device=DEV)
    view = big[:, 1:4, 1:-1, 2:-2]
    tr.deconv2d_revd2_triton(x, w, b, call.stride, call.padding, call.output_padding,
                             call.out_size, out=view)
    assert_matches(view, want, torch.float32)
    assert float(big[:, 0].abs().sum() + big[:, 4].abs().sum()) == 0


def test_full_size_g1_and_batched_g4_offsets():
    """Full-size G1 (1080 × 1920, 32 channels) and G4 (batch 8): 32-bit offsets and large
    grids, against PyTorch's TDC (cuDNN) in float32."""
    for (n, cin, c, r, h, w) in ((1, 32, 1, 2, 1080, 1920), (8, 16, 3, 2, 540, 960)):
        x = torch.randn(n, cin, h, w, device=DEV, dtype=torch.float16)
        _, wd, bd, geo = layer_weights(cin, c, r, torch.float16)[0]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(tt.TUNE_ENV, "0")
            got = upconv.deconv2d(x, wd, bd, geo.stride, geo.padding)
        torch.backends.cudnn.allow_tf32 = False
        try:
            want = upconv.deconv2d(x.float(), wd.float(), bd.float(), geo.stride, geo.padding,
                                   algorithm="tdc")
        finally:
            torch.backends.cudnn.allow_tf32 = True
        torch.testing.assert_close(got.float(), want, rtol=2e-3, atol=2e-3)


def test_torch_compile_reaches_the_kernel_through_deconv2d():
    """``upconv.deconv2d(algorithm="revd2")`` and a ``Deconv2d`` inside compiled code: the
    operator ``upconv::deconv2d`` is opaque to Inductor (no graph break, ``fullgraph=True``)
    and runs the Triton kernel, with the eager result."""
    sp = upconv.SubPixelConv2d(16, 3, 3, 2).to(DEV).eval()
    edge = sp.to_deconv("revd2").to(DEV).eval()
    x = torch.randn(1, 16, 24, 40, device=DEV)

    def layer(x):
        return upconv.deconv2d(x, edge.weight, edge.bias, edge.stride, edge.padding)

    with torch.no_grad():
        want = sp(x)
        before = sum(tr.FALLBACKS.values())
        torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x), want, rtol=1e-4,
                                   atol=1e-4)
        torch.testing.assert_close(torch.compile(edge, fullgraph=True)(x), want, rtol=1e-4,
                                   atol=1e-4)
        assert sum(tr.FALLBACKS.values()) == before  # the kernel ran, no fallback


def test_compiled_espcn_hands_its_channels_last_trunk_to_the_kernel(monkeypatch):
    """The GPU suite's compiled ESPCN ×2 (fp16, 540×960) ran the kernel at its NCHW speed
    although the graph's convolutions ran channels_last: the operator must get the trunk's
    layout as it is (the Inductor layout constraint in ``upconv.ops``)."""
    import upconv.functional as UF
    from upconv.sr import load_pretrained

    model = load_pretrained("espcn-x2").to_deconv("revd2").to(DEV, torch.float16).eval()
    layouts = []
    original = UF.run

    def spy(call, algorithm, out=None):
        layouts.append("channels_last" if call.x.is_contiguous(
            memory_format=torch.channels_last) and not call.x.is_contiguous() else
            "nchw" if call.x.is_contiguous() else f"strides {call.x.stride()}")
        return original(call, algorithm, out)

    monkeypatch.setattr(UF, "run", spy)
    torch._dynamo.reset()
    x = torch.rand(1, 1, 540, 960, device=DEV, dtype=torch.float16)
    with torch.no_grad():
        want = model(x).float()
        layouts.clear()
        got = torch.compile(model, fullgraph=True)(x).float()
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
    assert layouts == ["channels_last"], layouts
