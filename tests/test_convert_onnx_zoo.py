"""Real architectures from spandrel's zoo through the ONNX path: one case per pattern.

For each: the exact sites converted and left alone (with why), no silent miss (every
Resize / Upsample / DepthToSpace of the export is named in the report), the input model
untouched, and the converted graph equal to the original in ONNX Runtime on another size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx_cases import export, ops
from onnx_zoo import CASES

import upconv
from upconv.convert.onnx_convert import run_onnx

UPSAMPLING_OPS = {"Resize", "Upsample", "DepthToSpace"}


@pytest.mark.parametrize("name", list(CASES))
def test_zoo_case_through_onnx(name):
    build, shape, opset, expected = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(*shape)
    original = export(model, x, opset)
    if "export has" in expected:
        assert expected["export has"] in ops(original)
    before = original.SerializeToString()
    converted, report = upconv.convert_onnx(original, input_shape=shape)
    assert original.SerializeToString() == before

    kinds = [s.kind for s in report.converted]
    assert {k: kinds.count(k) for k in ("sub-pixel", "resize")} == {
        "sub-pixel": expected.get("sub-pixel", 0), "resize": expected.get("resize", 0)}, \
        str(report)
    reasons = [s.reason for s in report.skipped]
    wanted = expected.get("left alone", [])
    assert len(reasons) == len(wanted) and all(
        w in r for w, r in zip(wanted, reasons, strict=True)), str(report)
    assert report.verified and report.max_rel_error < 1e-5, str(report)

    named = " ".join([*(s.pattern for s in report.converted),
                      *(s.path for s in report.skipped)])
    for node in original.graph.node:  # no silent miss
        if node.op_type in UPSAMPLING_OPS:
            assert node.name in named, (node.name, str(report))
    assert ops(converted).count("ConvTranspose") >= len(report.converted)

    other = (2, shape[1], shape[2] + 8, shape[3] - 4)
    feeds = {i.name: v for i, v in zip(converted.graph.input,
                                       [np.random.default_rng(1).random(other, np.float32)],
                                       strict=False)}
    extra = {i.name: np.ones([], np.int64) for i in original.graph.input[1:]}  # RealCUGAN alpha
    want = run_onnx(original, {**feeds, **extra})[0]
    np.testing.assert_allclose(run_onnx(converted, {**feeds, **extra})[0], want,
                               rtol=1e-4, atol=2e-5)
