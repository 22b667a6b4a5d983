"""The operator ``torch.ops.upconv.deconv2d``: groups, ``out=``, autograd, torch.compile,
torch.export and its decomposition, ONNX export, concurrent callers."""

from __future__ import annotations

import concurrent.futures
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import conv_transpose2d_oracle
from strategies import deconv_problems

import upconv
import upconv.functional as UF
from upconv.convert.onnx_convert import run_onnx

PATHS = ("stdd", "strd", "revd", "revd2", "tdc")


def grouped_problem(p: dict, groups: int, dtype=torch.float32, seed: int = 0):
    """``p`` (tests/strategies.py) with ``groups`` times its channels."""
    g = torch.Generator().manual_seed(seed)
    cin, c = p["cin"] * groups, p["c"] * groups
    x = torch.randn(p["n"], cin, p["h"], p["w"], generator=g, dtype=dtype)
    w = torch.randn(cin, p["c"], p["kh"], p["kw"], generator=g, dtype=dtype)
    b = {"none": None, "channel": torch.randn(c, generator=g, dtype=dtype),
         "periodic": torch.randn(c, *p["period"], generator=g, dtype=dtype)}[p["bias"]]
    return x, w, b


@pytest.mark.parametrize("algorithm", PATHS)
@settings(max_examples=8, deadline=None)
@given(p=deconv_problems(), groups=st.integers(1, 3))
def test_groups_equal_conv_transpose2d(algorithm, p, groups):
    x, w, b = grouped_problem(p, groups)
    args = (p["stride"], p["padding"], p["output_padding"])
    want = conv_transpose2d_oracle(x, w, b, *args, groups=groups)
    with torch.no_grad():
        got = upconv.deconv2d(x, w, b, *args, algorithm=algorithm, groups=groups)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("algorithm", ["revd2", "tdc", "stdd"])
@settings(max_examples=8, deadline=None)
@given(p=deconv_problems(), groups=st.integers(1, 2))
def test_out_is_written_and_returned(algorithm, p, groups):
    x, w, b = grouped_problem(p, groups)
    args = (p["stride"], p["padding"], p["output_padding"])
    want = conv_transpose2d_oracle(x, w, b, *args, groups=groups)
    out = torch.full_like(want, float("nan"))
    with torch.no_grad():
        for _ in range(2):  # reused: every element is written on each call
            got = upconv.deconv2d(x, w, b, *args, algorithm=algorithm, groups=groups, out=out)
            assert got is out
            torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
            out.fill_(float("nan"))


def test_out_refuses_autograd():
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    w = torch.randn(2, 1, 4, 4)
    with pytest.raises(RuntimeError, match="out= does not support autograd"):
        upconv.deconv2d(x, w, None, 2, 1, out=torch.empty(1, 1, 6, 6))


@settings(max_examples=10, deadline=None)
@given(p=deconv_problems(max_kernel=5, max_stride=3), groups=st.integers(1, 2))
def test_gradcheck(p, groups):
    """The registered backward against finite differences, float64 (the backward is the same for
    every algorithm; STDD's forward is the quickest in float64)."""
    p = dict(p, n=1, cin=min(p["cin"], 2), c=min(p["c"], 2))  # fewer finite differences
    x, w, b = grouped_problem(p, groups, dtype=torch.float64)
    args = (p["stride"], p["padding"], p["output_padding"])
    inputs = [t.requires_grad_() for t in (x, w, b) if t is not None]

    def f(*tensors):
        xx, ww, *bb = tensors
        return upconv.deconv2d(xx, ww, bb[0] if bb else None, *args, "stdd", groups)

    assert torch.autograd.gradcheck(f, inputs)


def test_gradgradcheck():
    """Double backward (the backward is made of differentiable aten ops)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64, generator=g).requires_grad_()
    w = torch.randn(4, 2, 5, 4, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(4, 2, 3, dtype=torch.float64, generator=g).requires_grad_()

    def f(x, w, b):
        return upconv.deconv2d(x, w, b, (2, 3), (1, 2, 0, 1), (1, 2), "stdd", groups=2)

    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_training_forward_runs_the_kernel_and_backward_matches(monkeypatch):
    """With gradients required, the forward still runs the compiled kernel (the op's forward is
    below autograd) and the gradients equal conv_transpose2d's."""
    from upconv import kernels

    seen = []
    original = kernels.deconv2d_revd2_compiled

    def spy(*args, **kwargs):
        seen.append(1)
        return original(*args, **kwargs)

    spy.takes_out = True
    monkeypatch.setattr(kernels, "deconv2d_revd2_compiled", spy)
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    w = torch.randn(3, 2, 6, 6, requires_grad=True)
    b = torch.randn(2, 2, 2, requires_grad=True)
    y = upconv.deconv2d(x, w, b, 2, (2, 2, 2, 2), algorithm="revd2")
    grads = torch.autograd.grad((y * y).sum(), (x, w, b))
    assert seen
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    yr = conv_transpose2d_oracle(xr, wr, br, (2, 2), (2, 2, 2, 2))
    torch.testing.assert_close(y, yr)
    for got, want in zip(grads, torch.autograd.grad((yr * yr).sum(), (xr, wr, br)), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _spy_run(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = UF.run

    def spy(call, algorithm, out=None):
        calls.append(algorithm)
        return original(call, algorithm, out)

    monkeypatch.setattr(UF, "run", spy)
    return calls


def _model(algorithm: str) -> torch.nn.Module:
    """conv → ReLU → sub-pixel upsampler as a deconvolution → sigmoid: PyTorch ops around it."""
    torch.manual_seed(0)
    sp = upconv.SubPixelConv2d(8, 2, 3, scale=3)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               sp.to_deconv(algorithm), torch.nn.Sigmoid()).eval()


@pytest.mark.parametrize(("algorithm", "backend"), [("revd2", "inductor"), ("auto", "aot_eager")])
def test_compile_fullgraph_runs_the_chosen_algorithm(monkeypatch, algorithm, backend):
    model = _model(algorithm)
    calls = _spy_run(monkeypatch)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend=backend)
    with torch.no_grad():
        for shape in ((1, 3, 9, 11), (2, 3, 6, 5)):
            x = torch.randn(shape)
            calls.clear()
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)
            assert calls == [algorithm, algorithm]  # the compiled model's, then eager's


def test_compile_counts_no_graph_break():
    model = _model("revd2")
    explanation = torch._dynamo.explain(model)(torch.randn(1, 3, 8, 8))
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


def test_export_records_the_op_and_decomposes_to_aten(tmp_path):
    model = _model("revd2")
    x = torch.randn(1, 3, 7, 9)
    ep = torch.export.export(model, (x,))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert "upconv.deconv2d.default" in targets
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(ep.module()(x), want)
    torch.export.save(ep, tmp_path / "model.pt2")
    torch.testing.assert_close(torch.export.load(tmp_path / "model.pt2").module()(x), want)
    # the default table keeps it (an opaque kernel); upconv's table lowers it to core aten
    kept = ep.run_decompositions()
    assert "upconv.deconv2d.default" in [str(n.target) for n in kept.graph.nodes]
    core = ep.run_decompositions(upconv.export_decompositions())
    core_targets = [str(n.target) for n in core.graph.nodes if n.op == "call_function"]
    assert not any(t.startswith("upconv.") for t in core_targets)
    assert core_targets.count("aten.convolution.default") == 2
    torch.testing.assert_close(core.module()(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamo", [True, False])
def test_onnx_export_gives_conv_transpose(dynamo):
    model = _model("revd2")
    x = torch.randn(1, 3, 7, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {2: torch.export.Dim("H"), 3: torch.export.Dim("W")}
            proto = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"],
                                      dynamic_shapes=(dims,), verbose=False).model_proto
        else:
            buf = io.BytesIO()
            torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {2: "H", 3: "W"}}, opset_version=17)
            proto = onnx.load_from_string(buf.getvalue())
    ops = [n.op_type for n in proto.graph.node]
    assert "ConvTranspose" in ops and not any("upconv" in o for o in ops)
    for shape in ((1, 3, 7, 9), (1, 3, 5, 12)):
        x = torch.randn(shape)
        with torch.no_grad():
            want = model(x).numpy()
        got = run_onnx(proto, {proto.graph.input[0].name: x.numpy()})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fake_tensor_shapes_and_errors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x, w = torch.empty(2, 4, 5, 7), torch.empty(4, 3, 6, 6)
        y = torch.ops.upconv.deconv2d(x, w, None, [3, 3], [3, 3, 3, 3], [0, 0], 2, "revd2")
        assert tuple(y.shape) == (2, 6, 12, 18)
        with pytest.raises(ValueError, match="expects Cin = 4"):
            torch.ops.upconv.deconv2d(torch.empty(1, 3, 5, 5), w, None, [3, 3], [0, 0, 0, 0],
                                      [0, 0], 1, "revd2")


def test_concurrent_python_threads_get_correct_results():
    g = torch.Generator().manual_seed(3)
    problems = []
    for k in range(6):
        x = torch.randn(1, 8 + k, 23 + k, 31, generator=g)
        w = torch.randn(8 + k, 2, 6, 6, generator=g)
        b = torch.randn(2, 2, 2, generator=g)
        problems.append((x, w, b, conv_transpose2d_oracle(x, w, b, (2, 2), (2, 2, 2, 2))))

    def work(i: int) -> float:
        x, w, b, want = problems[i % len(problems)]
        with torch.no_grad():
            got = upconv.deconv2d(x, w, b, 2, 2, algorithm="revd2")
        return float((got - want).abs().max())

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        errors = list(pool.map(work, range(48)))
    assert max(errors) < 1e-4


def test_compiled_trunk_hands_its_layout_to_the_operator(monkeypatch):
    """Inductor runs a conv trunk channels_last; the operator gets that layout as it is (no
    transposing copy into NCHW first) and still computes the eager result."""
    from upconv.sr import load_pretrained

    model = load_pretrained("espcn-x3").to_deconv("revd2").eval()
    layouts = []
    original = UF.run

    def spy(call, algorithm, out=None):
        layouts.append(call.x.is_contiguous(memory_format=torch.channels_last)
                       and not call.x.is_contiguous())
        return original(call, algorithm, out)

    monkeypatch.setattr(UF, "run", spy)
    torch._dynamo.reset()
    x = torch.rand(1, 1, 24, 40)
    with torch.no_grad():
        want = model(x)
        layouts.clear()
        got = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert layouts == [True]


def test_plain_eager_calls_skip_the_dispatcher_and_everything_else_sees_the_op(monkeypatch):
    """Inference on plain tensors runs the kernel without the operator's Python round trip;
    a dispatch mode, the profiler, autograd and vmap still get ``upconv::deconv2d``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    x, w, b = torch.randn(2, 4, 5, 6), torch.nn.Parameter(torch.randn(4, 3, 4, 4)), None
    want = torch.nn.functional.conv_transpose2d(x, w.detach(), b, 2, 1)

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    dispatched = []

    class Spy:  # counts calls of the operator, forwards everything else to it
        def __init__(self, op):
            self.op = op

        def __call__(self, *args):
            dispatched.append(1)
            return self.op(*args)

        def __getattr__(self, name):
            return getattr(self.op, name)

    monkeypatch.setattr(torch.ops.upconv, "deconv2d", Spy(torch.ops.upconv.deconv2d))
    with torch.no_grad():
        torch.testing.assert_close(upconv.deconv2d(x, w, b, 2, 1), want)
        assert not dispatched  # the kernel, straight from deconv2d
        with Ops() as mode:
            torch.testing.assert_close(upconv.deconv2d(x, w, b, 2, 1), want)
        assert any("upconv.deconv2d" in op for op in mode.seen), mode.seen
        with torch.profiler.profile() as prof:
            upconv.deconv2d(x, w, b, 2, 1)
        assert any(e.name == "upconv::deconv2d" for e in prof.events())
        got = torch.vmap(lambda xi: upconv.deconv2d(xi, w, b, 2, 1))(x[:, None])
        torch.testing.assert_close(got[:, 0], want)
    y = upconv.deconv2d(x, w, b, 2, 1)  # autograd: through the operator's formula
    assert dispatched and y.grad_fn is not None
    y.sum().backward()
    assert w.grad is not None


def test_output_layout_follows_a_channels_last_input_on_cuda_only():
    """The fake kernel (what compiled graphs assume) and the eager kernel agree: channels_last
    out for a channels_last CUDA input (checked on fake CUDA tensors: no GPU needed), NCHW on
    the CPU, where the compiled kernel writes NCHW."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    def layout(device, fmt, c=3):
        with FakeTensorMode():
            x = torch.empty(2, 4, 5, 6, device=device).to(memory_format=fmt)
            w = torch.empty(4, c, 4, 4, device=device)
            y = torch.ops.upconv.deconv2d(x, w, None, [2, 2], [1, 1, 1, 1], [0, 0], 1, "revd2")
        return y.is_contiguous(memory_format=torch.channels_last), y.is_contiguous()

    assert layout("cuda", torch.channels_last) == (True, False)
    assert layout("cuda", torch.contiguous_format) == (False, True)
    assert layout("cpu", torch.channels_last) == (False, True)
    x = torch.randn(2, 4, 5, 6).to(memory_format=torch.channels_last)
    for algorithm in ("revd2", "tdc", "auto"):
        assert upconv.deconv2d(x, torch.randn(4, 3, 4, 4), None, 2, 1,
                               algorithm=algorithm).is_contiguous()
    assert UF.output_memory_format(x) == torch.contiguous_format


def test_plain_calls_validate_once_per_signature(monkeypatch):
    """A repeated plain call reuses its validated geometry; a new shape, layout, dtype or
    geometry is validated anew, bad input raises every time (nothing is kept for it), and a
    bool never passes for an int it equals."""
    checks = []
    original = UF.check_deconv
    monkeypatch.setattr(UF, "check_deconv", lambda *a, **k: checks.append(1) or original(*a, **k))
    UF._KNOWN.clear()
    x, w, b = torch.randn(1, 4, 5, 6), torch.randn(4, 2, 4, 4), torch.randn(2, 2, 2)
    want = UF.deconv2d_standard_ops(x, w, b, (2, 2), (1, 1, 1, 1), (0, 0))
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(upconv.deconv2d(x, w, b, 2, 1), want)
        assert len(checks) == 1
        upconv.deconv2d(x.contiguous(memory_format=torch.channels_last), w, b, 2, 1)
        upconv.deconv2d(x[..., :5], w, b, 2, 1)
        upconv.deconv2d(x.double(), w.double(), b.double(), 2, 1)
        upconv.deconv2d(x, w, b, 2, 2)
        assert len(checks) == 5
        upconv.deconv2d(x, w, b, [2, 2], [1, 1])  # lists: validated every call
        upconv.deconv2d(x, w, b, [2, 2], [1, 1])
        assert len(checks) == 7
        for _ in range(2):
            with pytest.raises(ValueError, match="channels"):
                upconv.deconv2d(torch.randn(1, 3, 5, 6), w, b, 2, 1)
        with pytest.raises(TypeError, match="bool"):
            upconv.deconv2d(x, w, b, 2, 1, groups=True)
        with pytest.raises(TypeError, match="bool"):
            upconv.deconv2d(x, w, b, (True, 2), 1)
    assert all(not isinstance(k[8], list) for k in UF._KNOWN)


def test_symbolic_shapes_give_the_kernels_output_layout():
    """With symbolic sizes (``torch.compile(dynamic=True)``) FakeTensor runs the op's
    decomposition instead of its fake kernel; on a channels_last CPU input that must still
    say NCHW, as the kernel writes: Inductor checks the real output's strides against it
    (it once expected channels_last and failed the call)."""
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (
        DimDynamic,
        ShapeEnv,
        StatelessSymbolicContext,
    )

    x = torch.randn(1, 8, 9, 11).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(8, 2, 9, 9), torch.randn(2, 3, 3)
    args = ([3, 3], [3, 3, 3, 3], [0, 0], 1, "revd2")
    real = torch.ops.upconv.deconv2d.default(x, w, b, *args)
    assert real.is_contiguous()
    dims = [DimDynamic.STATIC, DimDynamic.STATIC, DimDynamic.DYNAMIC, DimDynamic.DYNAMIC]
    with FakeTensorMode(shape_env=ShapeEnv()) as mode:
        fx = mode.from_tensor(x, symbolic_context=StatelessSymbolicContext(dynamic_sizes=dims),
                              source=ConstantSource("x"))
        fake = torch.ops.upconv.deconv2d.default(fx, mode.from_tensor(w), mode.from_tensor(b),
                                                 *args)
        assert fake.is_contiguous() and not fake.is_contiguous(
            memory_format=torch.channels_last)
