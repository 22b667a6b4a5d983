"""``convert_onnx(..., inputs=...)``: real feeds, non-float inputs, and clear errors; and a
report that names every upsampling candidate of a graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx_cases import make_model, ops

import upconv


def _subpixel_then(extra_nodes, extra_inputs=(), extra_inits=None, out="t"):
    """x → conv (8 channels) → DepthToSpace ×2 → ``extra_nodes`` (reading ``out``) → y."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(8).astype(np.float32), **(extra_inits or {})}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("DepthToSpace", ["c"], [out], blocksize=2, mode="CRD"),
             *extra_nodes]
    return make_model(nodes, inits, ["N", 3, "H", "W"], opset=13, extra_inputs=extra_inputs)


def test_inputs_as_dict_sequence_or_tensor():
    graph = _subpixel_then([helper.make_node("Relu", ["t"], ["y"])])
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 7))  # float64: cast to float32
    for feeds in ({"x": x}, [x], (torch.from_numpy(x),)):
        converted, report = upconv.convert_onnx(graph, inputs=feeds)
        assert report.verified and report.input_shape == (2, 3, 5, 7), str(report)
        assert len(report.converted) == 1 and ops(converted)[0] == "ConvTranspose"


def _alpha_graph(alpha_type=TensorProto.INT64, alpha_shape=()):
    """RealCUGAN's shape of things: a second, integer input ``alpha`` scales the output."""
    alpha = helper.make_tensor_value_info("alpha", alpha_type, list(alpha_shape))
    nodes = [helper.make_node("Cast", ["alpha"], ["af"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["af"], ["a"], keepdims=0),
             helper.make_node("Mul", ["t", "a"], ["y"])]
    return _subpixel_then(nodes, [alpha])


def test_scalar_non_float_input_defaults_to_one():
    graph = _alpha_graph()
    _, report = upconv.convert_onnx(graph)
    assert report.verified and len(report.converted) == 1, str(report)
    # a real value, the float input generated (input_shape applies to the float input)
    _, report = upconv.convert_onnx(graph, inputs={"alpha": np.array(3)},
                                    input_shape=(1, 3, 6, 4))
    assert report.verified and report.input_shape == (1, 3, 6, 4)


def test_non_float_input_without_a_default_needs_inputs():
    graph = _alpha_graph(alpha_shape=["N", 2])
    with pytest.raises(ValueError, match=r"'alpha'.*inputs=\{'alpha': array\}"):
        upconv.convert_onnx(graph)
    _, report = upconv.convert_onnx(graph, inputs={"alpha": np.ones((1, 2), np.int64)})
    assert report.verified and len(report.converted) == 1
    _, report = upconv.convert_onnx(graph, verify=False)  # nothing to run, nothing needed
    assert not report.verified and len(report.converted) == 1


def test_original_that_does_not_run_on_the_input_is_a_clear_error():
    """A graph that only runs at 4×4 (a constant reshape): the generated 32×32 input fails in
    ONNX Runtime on the *original*; the error names the input and ORT's message."""
    graph = _subpixel_then([helper.make_node("Reshape", ["t", "s"], ["y"])],
                           extra_inits={"s": np.asarray([1, 2, 8, 8], np.int64)})
    with pytest.raises(ValueError, match=r"original model does not run.*x float32\[1, 3, 32, 32\]"
                       r".*Reshape") as err:
        upconv.convert_onnx(graph)
    assert "inputs=" in str(err.value)
    _, report = upconv.convert_onnx(graph, input_shape=(1, 3, 4, 4))
    assert report.verified and len(report.converted) == 1


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"inputs": {"image": np.zeros((1, 3, 4, 4))}}, ValueError, r"\['image'\] are not graph"),
    ({"inputs": [np.zeros((1, 3, 4, 4)), np.array(1), np.array(2)]}, ValueError, "3 inputs"),
    ({"inputs": {"alpha": np.array(0.5)}}, ValueError, "'alpha' must be int64"),
    ({"inputs": {"x": np.zeros((3, 4, 4))}}, ValueError, "'x' must have rank 4"),
    ({"inputs": "x.npy"}, TypeError, "inputs must be a dict"),
    ({"input_shape": (1, 3, 4)}, ValueError, "fits no floating-point input"),
])
def test_bad_inputs_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        upconv.convert_onnx(_alpha_graph(), **kwargs)


def test_every_candidate_is_reported():
    """One graph, six upsampling candidates: two convert, each other is named with why."""
    rng = np.random.default_rng(0)
    f = np.float32
    inits = {"w8": rng.standard_normal((8, 3, 3, 3)).astype(f),
             "w2": rng.standard_normal((2, 3, 3, 3)).astype(f),
             "s2": np.asarray([1, 1, 2, 2], f), "tile": np.asarray([1, 2, 2, 2, 4, 4], np.int64),
             "perm_sh": np.asarray([1, 2, 8, 8], np.int64)}
    near = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor"}
    nodes = [
        # converted: conv → shuffle
        helper.make_node("Conv", ["x", "w8"], ["a0"], pads=[1, 1, 1, 1], name="conv_a"),
        helper.make_node("DepthToSpace", ["a0"], ["a"], blocksize=2, mode="CRD", name="d2s_a"),
        # bilinear resize → conv
        helper.make_node("Resize", ["x", "", "s2"], ["b0"], mode="linear", name="bilinear"),
        helper.make_node("Conv", ["b0", "w2"], ["b"], pads=[1, 1, 1, 1], name="conv_b"),
        # nearest resize → add (not a conv)
        helper.make_node("Resize", ["x", "", "s2"], ["c0"], name="nearest_add", **near),
        helper.make_node("ReduceMean", ["c0"], ["c"], axes=[1], keepdims=1, name="mean_c"),
        # shuffle of a sum of two convs: one conv converts, the other addend is shuffled alone
        helper.make_node("Conv", ["x", "w8"], ["d0"], pads=[1, 1, 1, 1], name="conv_d0"),
        helper.make_node("Conv", ["x", "w8"], ["d1"], pads=[1, 1, 1, 1], name="conv_d1"),
        helper.make_node("Add", ["d0", "d1"], ["d2"], name="add_d"),
        helper.make_node("DepthToSpace", ["d2"], ["d"], blocksize=2, mode="CRD", name="d2s_d"),
        # a tiling, not a pixel shuffle: (n, c, a, h, b, w)
        helper.make_node("Conv", ["x", "w8"], ["e0"], pads=[1, 1, 1, 1], name="conv_e"),
        helper.make_node("Reshape", ["e0", "tile"], ["e1"], name="tile_split"),
        helper.make_node("Transpose", ["e1"], ["e2"], perm=[0, 1, 2, 4, 3, 5], name="tile_perm"),
        helper.make_node("Reshape", ["e2", "perm_sh"], ["e"], name="tile_merge"),
        # nearest resize → conv whose output is also the graph output... and read elsewhere
        helper.make_node("Resize", ["x", "", "s2"], ["g0"], name="nearest_shared", **near),
        helper.make_node("Conv", ["g0", "w2"], ["g"], pads=[1, 1, 1, 1], name="conv_g"),
        helper.make_node("Relu", ["g0"], ["g1"], name="relu_g"),
        helper.make_node("ReduceMean", ["g1"], ["g2"], axes=[1], keepdims=1, name="mean_g"),
        helper.make_node("Sum", ["a", "b", "c", "d", "e", "g", "g2"], ["y"], name="sum"),
    ]
    graph = make_model(nodes, inits, [1, 3, 4, 4], opset=13)
    converted, report = upconv.convert_onnx(graph)
    assert [s.pattern.split(" ")[0] for s in report.converted] == ["conv_a", "conv_d0"]
    assert "the other addend of add_d shuffled on its own" in report.converted[1].pattern
    reasons = {s.path: s.reason for s in report.skipped}
    assert len(reasons) == 4, str(report)
    assert "linear resize" in reasons["bilinear"]
    assert "it is ReduceMean" in reasons["nearest_add"]
    assert "block offset is major" in reasons["tile_split … tile_merge"]
    assert "it reads 'g0' too" in reasons["nearest_shared"]
    every = {n.name for n in graph.graph.node if n.op_type in ("Resize", "DepthToSpace")}
    named = " ".join([*(s.pattern for s in report.converted), *reasons])
    assert all(name in named for name in every), (every, named)
    assert ops(converted).count("ConvTranspose") == 2 and ops(converted).count("DepthToSpace") == 1
