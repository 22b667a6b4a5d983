"""ONNX Runtime's ConvTranspose as an ``auto`` candidate: exact, cached per weight, no autograd."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from oracle import conv_transpose2d_oracle
from strategies import deconv_problems

import upconv
from upconv import autotune
from upconv.functional import check_deconv
from upconv.kernels import ort_path
from upconv.kernels.ort_path import deconv2d_convtranspose_ort

TOL = dict(rtol=1e-4, atol=1e-4)


def run(x, w, b, stride, padding, output_padding=(0, 0)):
    call = check_deconv(x, w, b, stride, padding, output_padding)
    return deconv2d_convtranspose_ort(call.x, call.weight, call.bias, call.stride, call.padding,
                                      call.output_padding, call.out_size)


@pytest.fixture
def builds(monkeypatch):
    """Sessions built by ``ort_path`` during the test, in order."""
    made = []
    real = ort_path.build_session

    def counting(*args, **kw):
        made.append(real(*args, **kw))
        return made[-1]

    monkeypatch.setattr(ort_path, "build_session", counting)
    return made


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@settings(max_examples=30, deadline=None)
@given(p=deconv_problems())
def test_matches_conv_transpose2d(p):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p["n"], p["cin"], p["h"], p["w"], generator=g)
    w = torch.randn(p["cin"], p["c"], p["kh"], p["kw"], generator=g)
    b = {"none": None, "channel": torch.randn(p["c"], generator=g),
         "periodic": torch.randn(p["c"], *p["period"], generator=g)}[p["bias"]]
    y = run(x, w, b, p["stride"], p["padding"], p["output_padding"])
    ref = conv_transpose2d_oracle(x, w, b, p["stride"], p["padding"], p["output_padding"])
    torch.testing.assert_close(y, ref, **TOL)


def test_session_is_built_once_per_weight_and_serves_any_input_size(builds):
    w, b = torch.randn(3, 4, 4, 4), torch.randn(4)
    for size in [(5, 6), (5, 6), (9, 3)]:
        x = torch.randn(2, 3, *size)
        torch.testing.assert_close(run(x, w, b, 2, 1), conv_transpose2d_oracle(
            x, w, b, (2, 2), (1, 1, 1, 1)), **TOL)
    assert len(builds) == 1
    b2 = torch.randn(4)  # a new per-channel bias is an input, not part of the session
    torch.testing.assert_close(run(x, w, b2, 2, 1), conv_transpose2d_oracle(
        x, w, b2, (2, 2), (1, 1, 1, 1)), **TOL)
    assert len(builds) == 1
    run(x, w, b, 2, (1, 0, 1, 1))  # new geometry: a new session
    assert len(builds) == 2


def test_in_place_weight_update_rebuilds_the_session(builds):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 3, 3, 3)
    run(x, w, None, 2, 1)
    with torch.no_grad():
        w.add_(1)
    torch.testing.assert_close(run(x, w, None, 2, 1), conv_transpose2d_oracle(
        x, w, None, (2, 2), (1, 1, 1, 1)), **TOL)
    assert len(builds) == 2


def test_thread_count_and_passive_waits_are_in_the_session_options(builds, threads):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 3, 3, 3)
    for n in (1, 2):
        torch.set_num_threads(n)
        run(x, w, None, 2, 1)
        opts = builds[-1].get_session_options()
        assert opts.intra_op_num_threads == n and opts.inter_op_num_threads == 1
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert len(builds) == 2  # one session per thread count


def test_channels_last_input():
    x = torch.randn(2, 3, 6, 7).to(memory_format=torch.channels_last)
    w, b = torch.randn(3, 2, 5, 5), torch.randn(2, 3, 3)
    torch.testing.assert_close(run(x, w, b, 3, (2, 1, 0, 2)), conv_transpose2d_oracle(
        x, w, b, (3, 3), (2, 1, 0, 2)), **TOL)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    autotune.clear_memory()
    yield
    autotune.clear_memory()


def test_auto_runs_ort_when_it_is_fastest(cache, monkeypatch, builds):
    def ort_fastest(impls, call, **kw):
        return {name: 0.0 if name == "convtranspose-ort" else 1.0 for name in impls}

    monkeypatch.setattr(autotune, "time_candidates", ort_fastest)
    x, w, b = torch.randn(2, 4, 7, 9), torch.randn(4, 3, 6, 6), torch.randn(3, 2, 2)
    y = upconv.deconv2d(x, w, b, 2, 2, algorithm="auto")
    torch.testing.assert_close(y, conv_transpose2d_oracle(x, w, b, (2, 2), (2, 2, 2, 2)), **TOL)
    assert autotune.choose(check_deconv(x, w, b, 2, 2)) == "convtranspose-ort"
    assert len(builds) == 1  # ORT really ran


def test_calls_needing_gradients_or_other_dtypes_never_get_ort(cache):
    x, w = torch.randn(1, 2, 5, 5), torch.randn(2, 3, 3, 3, requires_grad=True)
    call = check_deconv(x, w, None, 2, 1)
    assert "convtranspose-ort" not in autotune.eligible(call)
    with pytest.raises(ValueError, match="gradients"):
        run(x, w, None, 2, 1)
    y = upconv.deconv2d(x, w, None, 2, 1, algorithm="auto")
    assert y.requires_grad  # a PyTorch path ran
    with torch.no_grad():
        assert "convtranspose-ort" in autotune.eligible(call)
    double = check_deconv(x.double(), w.detach().double(), None, 2, 1)
    assert "convtranspose-ort" not in autotune.eligible(double)
