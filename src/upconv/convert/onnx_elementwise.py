"""Ops between the two halves of an upsampling pair that a deconvolution can absorb or carry.

Between ``Conv`` and its pixel shuffle, and between a nearest ``Resize`` and its ``Conv``,
exporters leave per-pixel ops: activations (``Relu``, ``LeakyRelu``, ``PRelu``, ``Clip``, …),
multiplies / adds by a learned scalar or per-channel constant, and crops (``Slice``, negative
``Pad``). Each is classified here as an :class:`Elementwise`:

* ``"scale"`` / ``"shift"``: ``x·s``, ``x/s``, ``x ± a``, ``a − x`` with a constant that is a
  scalar or one value per channel: foldable into the conv's weights and bias while nothing
  nonlinear came before it;
* ``"pointwise"``: anything else applied value by value with constants that do not vary over
  space: it commutes with a pixel shuffle if its constants map onto the shuffled channels, and
  with a nearest resize always;
* ``"crop"``: a spatial ``Slice`` / negative ``Pad`` of the low-resolution tensor;
* ``"identity"``: ``Identity``, dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .conv_params import Unsupported
from .onnx_graph import attributes
from .onnx_values import GraphValues, as_int

# Unary ops applied value by value (their attributes are constants).
UNARY = {"Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "Tanh", "HardSigmoid",
         "HardSwish", "Softplus", "Softsign", "Mish", "Gelu", "ThresholdedRelu", "Neg", "Abs",
         "Erf", "Identity", "Clip"}
# Binary ops with one constant operand, applied value by value.
BINARY = {"Mul", "Add", "Sub", "Div", "PRelu", "Pow", "Max", "Min"}


@dataclass(frozen=True)
class Elementwise:
    """One op on the path. ``param`` is the constant operand per channel ``(K,)`` (or ``()``
    for a scalar) of a binary op; ``crop`` is ``(top, bottom, left, right)`` for a crop."""

    node: onnx.NodeProto
    kind: str  # "scale", "shift", "pointwise", "crop" or "identity"
    data_index: int = 0
    param: np.ndarray | None = None
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def data(self) -> str:
        return self.node.input[self.data_index]

    def fold(self, weight: np.ndarray, bias: np.ndarray | None
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(weight, bias)`` of the conv whose output is this op's output (scale/shift only;
        ``bias`` None is a zero bias, kept None while only scales fold)."""
        p = self.param.astype(np.float64)
        op, first = self.node.op_type, self.data_index == 0
        if op == "Mul" or (op == "Div" and first):
            s = p if op == "Mul" else 1.0 / p
            return weight * _per_out(s, weight), None if bias is None else bias * s
        b = np.zeros(weight.shape[0]) if bias is None else bias
        if op == "Add" or (op == "Sub" and first):
            return weight, b + (p if op == "Add" else -p)
        if op == "Sub":  # a - x
            return -weight, p - b
        raise AssertionError(f"{op} does not fold")


def _per_out(p: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return p.reshape((-1,) + (1,) * (weight.ndim - 1)) if p.ndim else p


def classify(values: GraphValues, node: onnx.NodeProto, data: str, channels: int | None,
             dims: tuple | None) -> Elementwise:
    """``node`` (which reads tensor ``data`` of ``channels`` channels, None if unknown) as an
    :class:`Elementwise`, or :class:`Unsupported` saying why it is not one."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        raise Unsupported(f"{op} ({node.domain}) is not a known elementwise op")
    if op == "Identity":
        return Elementwise(node, "identity")
    if op in UNARY:
        if node.input[0] != data:
            raise Unsupported(f"{op} reads the tensor as a parameter")
        if op == "Clip" and any(values.constant(i) is None for i in node.input[1:] if i):
            raise Unsupported("Clip bounds are computed at run time")
        return Elementwise(node, "pointwise")
    if op in BINARY:
        return _binary(values, node, data, channels)
    if op == "Slice":
        return Elementwise(node, "crop", crop=_slice_crop(values, node, data, dims))
    if op == "Pad":
        return Elementwise(node, "crop", crop=_pad_crop(values, node, data))
    raise Unsupported(f"{op} is not an elementwise op that commutes")


def _binary(values: GraphValues, node: onnx.NodeProto, data: str,
            channels: int | None) -> Elementwise:
    op = node.op_type
    if len(node.input) != 2 or list(node.input).count(data) != 1:
        raise Unsupported(f"{op} does not combine the tensor with one other input")
    i = list(node.input).index(data)
    if op == "PRelu" and i != 0:
        raise Unsupported("PRelu reads the tensor as its slope")
    other = values.constant(node.input[1 - i])
    if other is None:
        raise Unsupported(f"{op} with a tensor computed at run time (not a constant)")
    param = per_channel(other, channels, op)
    first = i == 0
    if op in ("Mul", "Add") or (op in ("Div", "Sub") and first):
        kind = "scale" if op in ("Mul", "Div") else "shift"
    elif op == "Sub":
        kind = "shift"
    else:
        kind = "pointwise"
    return Elementwise(node, kind, i, param)


def per_channel(value: np.ndarray, channels: int | None, what: str) -> np.ndarray:
    """A constant broadcast against ``(N, channels, H, W)`` as ``()`` or ``(channels,)``.

    :class:`Unsupported` when it varies over space or batch, or would broadcast the tensor up
    (with ``channels`` unknown, only a single value is safe).
    """
    v = np.asarray(value)
    if v.ndim > 4:
        raise Unsupported(f"{what} constant of rank {v.ndim} broadcasts the tensor up")
    shape = (1,) * (4 - v.ndim) + v.shape
    if shape[0] != 1 or shape[2] != 1 or shape[3] != 1:
        raise Unsupported(f"{what} constant of shape {v.shape} varies over batch or space")
    if shape[1] != 1 and channels is None:
        raise Unsupported(f"{what} constant of shape {v.shape} on a tensor whose channel count "
                          "is not known")
    if shape[1] not in (1, channels):
        raise Unsupported(f"{what} constant of shape {v.shape} does not fit {channels} channels")
    flat = v.reshape(-1)
    return flat.reshape(()) if shape[1] == 1 else flat


def _slice_crop(values: GraphValues, node: onnx.NodeProto, data: str,
                dims: tuple | None) -> tuple[int, int, int, int]:
    if node.input[0] != data:
        raise Unsupported("Slice of something else")
    a = attributes(node)
    if len(node.input) > 1:
        parts = [values.constant(n) if n else None for n in node.input[1:5]]
        parts += [None] * (4 - len(parts))
        starts, ends, axes, steps = parts
        if starts is None or ends is None or (len(node.input) > 3 and node.input[3]
                                              and axes is None) or (
                len(node.input) > 4 and node.input[4] and steps is None):
            raise Unsupported("Slice bounds are computed at run time")
    else:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    starts, ends = np.asarray(starts).ravel(), np.asarray(ends).ravel()
    axes = np.arange(len(starts)) if axes is None else np.asarray(axes).ravel()
    if steps is not None and np.any(np.asarray(steps) != 1):
        raise Unsupported("Slice with a step other than 1")
    crop = [0, 0, 0, 0]
    for s, e, ax in zip(starts, ends, axes, strict=True):
        ax = int(ax) % 4
        length = None if dims is None else dims[ax]
        lo, hi = _crop_amounts(int(s), int(e), length)
        if (lo, hi) == (0, 0):
            continue
        if ax < 2:
            raise Unsupported("Slice crops the batch or channel axis")
        crop[2 * (ax - 2)] += lo
        crop[2 * (ax - 2) + 1] += hi
    return tuple(crop)


def _crop_amounts(start: int, end: int, length) -> tuple[int, int]:
    """How much a ``[start:end]`` slice drops from each end of an axis of ``length``."""
    n = None if length is None else as_int(length)
    open_end = end >= 2**31 - 1 or (n is not None and end >= n)
    if (start < 0 or not (open_end or end < 0)) and n is None:
        raise Unsupported("Slice bounds relative to a size that is not static")
    lo = start if start >= 0 else n + start
    hi = 0 if open_end else (-end if end < 0 else n - end)
    if lo < 0 or hi < 0:
        raise Unsupported("Slice bounds outside the tensor")
    return lo, hi


def _pad_crop(values: GraphValues, node: onnx.NodeProto,
              data: str) -> tuple[int, int, int, int]:
    a = attributes(node)
    if node.input[0] != data or a.get("mode", "constant") != "constant":
        raise Unsupported(f"Pad mode {a.get('mode')} (only negative constant pads crop)")
    pads = a.get("pads")
    if pads is None:
        pads = values.constant(node.input[1])
        if pads is None:
            raise Unsupported("Pad amounts are computed at run time")
        if len(node.input) > 3 and node.input[3]:
            axes = values.constant(node.input[3])
            if axes is None:
                raise Unsupported("Pad axes are computed at run time")
            full = np.zeros(8, np.int64)
            for j, ax in enumerate(np.asarray(axes).ravel()):
                full[int(ax) % 4], full[int(ax) % 4 + 4] = pads[j], pads[j + len(axes)]
            pads = full
    pads = [int(p) for p in np.asarray(pads).ravel()]
    if len(pads) != 8:
        raise Unsupported(f"Pad of a rank-{len(pads) // 2} tensor")
    if any(p > 0 for p in pads):
        raise Unsupported("Pad adds pixels (only negative pads, i.e. crops, commute)")
    if pads[0] or pads[1] or pads[4] or pads[5]:
        raise Unsupported("Pad crops the batch or channel axis")
    return (-pads[2], -pads[6], -pads[3], -pads[7])

