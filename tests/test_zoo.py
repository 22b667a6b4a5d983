"""The spandrel zoo (``spandrel_zoo.CASES``) through ``upconv.convert`` and the ONNX path.

Per case: the sites each path reports (converted / left alone by reason), verification,
no silent miss (the report accounts for every upsampling op the forward runs), the original
model and example input bit-identical afterwards, and the converted model equal to the
original on an input size it was not converted with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import spandrel_zoo as Z
import torch

ZOO = pytest.mark.parametrize("case", Z.CASES, ids=lambda c: c.id)


@ZOO
def test_torch_path(case):
    model, x = Z.build(case)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x_before = x.clone()
    outcome, converted = Z.run_torch(case, model, x)
    report = outcome.report
    assert outcome.as_expect() == case.torch, str(report)
    assert report.verified and report.max_rel_error <= 1e-4
    # the original and the example input are untouched, bit for bit
    assert torch.equal(x, x_before)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert not model.training and converted.training == model.training
    # another input size: the converted model's own forward, same RNG, same result; and every
    # upsampling op the original runs there is accounted for in the report (no silent miss)
    x2 = torch.rand(*case.other_shape, generator=torch.Generator().manual_seed(1))
    ref, ops = Z.run_counting(model, x2)
    got, _ = Z.run_counting(converted, x2)
    ref, got = Z.first_tensor(ref), Z.first_tensor(got)
    assert ref.shape == got.shape
    assert (ref - got).abs().max() <= 1e-4 * ref.abs().max()
    assert len(report.converted) + len(report.skipped) == ops, str(report)


@ZOO
def test_onnx_path(case):
    model, x = Z.build(case)
    outcome = Z.run_onnx(case, model, x)
    if isinstance(case.onnx, Z.OnnxFails):
        assert outcome.error is not None, f"expected to fail, got {outcome.as_expect()}"
        assert outcome.error.startswith(case.onnx.stage) and case.onnx.match in outcome.error
        return
    assert outcome.error is None, outcome.error
    assert outcome.as_expect() == case.onnx, str(outcome.report)
    assert outcome.verified


def test_torch_target_and_summary():
    """≥ 95 % of the cases exact through PyTorch (the per-case tests hold each one to it)."""
    exact = sum(Z.torch_exact(c) for c in Z.CASES)
    assert exact >= 0.95 * len(Z.CASES), Z.summary()
    assert {c.arch for c in Z.CASES} == set(Z.ARCHITECTURES)


def test_onnx_target():
    """≥ 95 % exact through ONNX of the cases whose export succeeds (the issue's target)."""
    exported = [c for c in Z.CASES if Z.onnx_exact(c) is not None]
    exact = sum(bool(Z.onnx_exact(c)) for c in exported)
    assert exact >= 0.95 * len(exported), Z.summary()


@ZOO
def test_case_is_a_real_instance(case):
    """No layer shrunk to nothing (tiny widths can make spandrel build 0-channel layers)."""
    model = case.build()
    assert all(p.numel() for p in model.parameters()), case.id


def test_every_spandrel_architecture_is_classified():
    """A spandrel update with a new architecture fails here until it is in the zoo."""
    import spandrel.architectures as archs

    names = {p.name for p in Path(archs.__file__).parent.iterdir()
             if p.is_dir() and not p.name.startswith("_")}
    assert names == set(Z.ARCHITECTURES) | set(Z.NOT_UPSCALING)


@pytest.mark.parametrize("key", list(Z.NOT_RUNNABLE))
def test_not_runnable_variants_still_fail_on_cpu(key):
    """If spandrel fixes these, they belong in CASES."""
    model, x = Z.not_runnable(key)
    with pytest.raises(RuntimeError), torch.no_grad():
        model(x)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads; on a busy machine each parallel op can
    wait a scheduler slice for its second thread (measured: ~12 ms per op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
