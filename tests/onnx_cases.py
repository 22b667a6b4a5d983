"""Helpers for the ONNX conversion tests: build graphs, export torch modules, run and compare."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

import upconv
from upconv.convert.onnx_convert import run_onnx

DYNAMIC = {0: "N", 2: "H", 3: "W"}


def make_model(nodes, inits: dict, in_shape, opset: int = 17, extra_inputs=(),
               ir_version: int | None = None) -> onnx.ModelProto:
    """A graph ``x (float, in_shape) → y`` (plus ``extra_inputs`` value infos)."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape)), *extra_inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    ir = ir_version or (7 if opset < 15 else 8)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=ir)


def export(model: torch.nn.Module, x: torch.Tensor, opset: int, dynamo: bool = False,
           dynamic: bool = True) -> onnx.ModelProto:
    """``model`` exported by the TorchScript exporter (``dynamo=False``) at ``opset`` or by the
    dynamo exporter (opset 18), with dynamic N, H, W when ``dynamic``."""
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(model, (x,), dynamo=True, input_names=["x"],
                                        dynamic_shapes=(DYNAMIC,) if dynamic else None,
                                        verbose=False)
            return program.model_proto
        buf = io.BytesIO()
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": DYNAMIC} if dynamic else None)
    return onnx.load_from_string(buf.getvalue())


def ort(model: onnx.ModelProto, x: np.ndarray, **extra) -> np.ndarray:
    """The first output of ``model`` on input ``x`` (the first graph input) in ONNX Runtime."""
    return run_onnx(model, {model.graph.input[0].name: x, **extra})[0]


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def convert_and_check(original: onnx.ModelProto, shapes, seed: int = 0, **kwargs):
    """Convert ``original``, then compare both graphs in ONNX Runtime on every input shape in
    ``shapes`` (the first is the verification shape). Returns ``(converted, report)``."""
    converted, report = upconv.convert_onnx(original, input_shape=shapes[0], **kwargs)
    rng = np.random.default_rng(seed)
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(ort(converted, x), ort(original, x), rtol=1e-4, atol=1e-5)
    return converted, report
