"""Output dims of common ONNX ops as sympy formulas in their inputs' dims.

ONNX shape inference leaves a dim open (``unk__12``) as soon as it is not a number, so it
cannot say that a same-padded conv keeps ``H`` or that ``Reshape(Tile(x), Shape(...))`` has
``x``'s size. These rules can, for the ops exporters put between an upsampler and the
tensors its sizes come from; an op without a rule (or a dim a rule cannot decide, such as a
broadcast of two unrelated sizes) gives None and the caller uses a fresh symbol.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import sympy

from .onnx_graph import attributes

Dims = tuple[sympy.Expr, ...]
Rule = Callable[["object", onnx.NodeProto, list], "Dims | None"]

ONE = sympy.Integer(1)

_SAME_AS_FIRST = {
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
    "Softplus", "Softsign", "Mish", "Gelu", "Erf", "Clip", "Identity", "Neg", "Abs", "Exp", "Log",
    "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Not", "Cast",
    "CastLike", "Dropout", "BatchNormalization", "InstanceNormalization", "LayerNormalization",
    "GroupNormalization", "Softmax", "LogSoftmax", "ScatterND", "ScatterElements", "IsNaN",
    "ThresholdedRelu",
}
_BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where",
              "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor",
              "Mod", "BitShift"}


def broadcast(shapes: list[Dims]) -> Dims | None:
    """Numpy broadcasting of ``shapes``; None where two sizes are not provably compatible."""
    rank = max(len(s) for s in shapes)
    out = []
    for axis in range(rank):
        sizes = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        sizes.discard(ONE)
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else ONE)
    return tuple(out)


def _same(values, node, ins):
    return ins[0]


def _broadcast(values, node, ins):
    known = [d for name, d in zip(node.input, ins, strict=True) if name]
    return None if any(d is None for d in known) else broadcast(known)


def _window(size, kernel, pad, stride, dilation, ceil=False):
    span = size + pad - dilation * (kernel - 1) - 1
    rounded = sympy.ceiling(span / stride) if ceil else sympy.floor(span / stride)
    return rounded + 1


def _conv(values, node, ins):
    x = ins[0]
    a = attributes(node)
    if node.op_type == "Conv":
        weight = values.constant(node.input[1])
        if weight is None:
            return None
        channels, kernel = sympy.Integer(weight.shape[0]), list(weight.shape[2:])
    else:  # pooling keeps the channels
        channels, kernel = None, list(a.get("kernel_shape", []))
    if x is None or len(x) != 2 + len(kernel) or a.get("auto_pad", "NOTSET") != "NOTSET":
        return None
    n = len(kernel)
    pads = a.get("pads", [0] * 2 * n)
    strides, dil = a.get("strides", [1] * n), a.get("dilations", [1] * n)
    spatial = [_window(x[2 + i], kernel[i], pads[i] + pads[i + n], strides[i], dil[i],
                       bool(a.get("ceil_mode", 0))) for i in range(n)]
    return (x[0], x[1] if channels is None else channels, *spatial)


def _axes(values, node):
    axes = attributes(node).get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = values.constant(node.input[1])
        axes = None if value is None else [int(v) for v in np.asarray(value).ravel()]
    return axes


def _unsqueeze(values, node, ins):
    axes = _axes(values, node)
    if ins[0] is None or axes is None:
        return None
    out = list(ins[0])
    for ax in sorted(a % (len(out) + len(axes)) for a in axes):
        out.insert(ax, ONE)
    return tuple(out)


def _squeeze(values, node, ins):
    axes = _axes(values, node)
    if ins[0] is None:
        return None
    drop = {a % len(ins[0]) for a in axes} if axes is not None else {
        i for i, d in enumerate(ins[0]) if d == 1}
    if any(ins[0][a] != 1 for a in drop):
        return None
    return tuple(d for i, d in enumerate(ins[0]) if i not in drop)


def _transpose(values, node, ins):
    if ins[0] is None:
        return None
    perm = attributes(node).get("perm", list(range(len(ins[0])))[::-1])
    return tuple(ins[0][p] for p in perm)


def _tile(values, node, ins):
    repeats = values.constant(node.input[1])
    if ins[0] is None or repeats is None or len(repeats) != len(ins[0]):
        return None
    return tuple(d * int(r) for d, r in zip(ins[0], repeats, strict=True))


def _reshape(values, node, ins):
    target = values.symbolic(node.input[1])
    if ins[0] is None or target is None:
        return None
    allowzero = attributes(node).get("allowzero", 0)
    sizes = [ins[0][i] if t == 0 and not allowzero else t
             for i, t in enumerate(np.asarray(target).ravel())]
    if sum(1 for s in sizes if s == -1) == 1:
        known = sympy.Mul(*(s for s in sizes if s != -1))
        rest = sympy.cancel(sympy.Mul(*ins[0]) / known)
        sizes = [rest if s == -1 else s for s in sizes]
    return tuple(sympy.sympify(s) for s in sizes)


def _depth_to_space(values, node, ins):
    if ins[0] is None or len(ins[0]) != 4:
        return None
    n, c, h, w = ins[0]
    r = int(attributes(node)["blocksize"])
    if node.op_type == "DepthToSpace":
        return (n, c / (r * r), h * r, w * r)
    return (n, c * r * r, h / r, w / r)


def _concat(values, node, ins):
    if any(d is None for d in ins) or not ins:
        return None
    axis = attributes(node)["axis"] % len(ins[0])
    return tuple(sympy.Add(*(d[axis] for d in ins)) if i == axis else ins[0][i]
                 for i in range(len(ins[0])))


def _reduce(values, node, ins):
    a = attributes(node)
    axes = _axes(values, node)
    if ins[0] is None:
        return None
    if axes is None:
        if a.get("noop_with_empty_axes", 0):
            return ins[0]
        axes = range(len(ins[0]))
    drop = {ax % len(ins[0]) for ax in axes}
    if a.get("keepdims", 1):
        return tuple(ONE if i in drop else d for i, d in enumerate(ins[0]))
    return tuple(d for i, d in enumerate(ins[0]) if i not in drop)


RULES: dict[str, Rule] = {
    **dict.fromkeys(_SAME_AS_FIRST, _same),
    **dict.fromkeys(_BROADCAST, _broadcast),
    "Conv": _conv, "MaxPool": _conv, "AveragePool": _conv, "LpPool": _conv,
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Transpose": _transpose, "Tile": _tile,
    "Reshape": _reshape, "DepthToSpace": _depth_to_space, "SpaceToDepth": _depth_to_space,
    "Concat": _concat,
    **dict.fromkeys(("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                     "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare"), _reduce),
}


def output_dims(values, node: onnx.NodeProto, ins: list[Dims | None]) -> Dims | None:
    """The first output's dims of ``node`` from its inputs' dims ``ins``, or None."""
    rule = RULES.get(node.op_type)
    if rule is None or node.domain not in ("", "ai.onnx"):
        return None
    try:
        return rule(values, node, ins)
    except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, AttributeError):
        return None
