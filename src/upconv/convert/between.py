"""Ops between a conv and its shuffle, or a resize and its conv: which may sit there, and the
arithmetic of folding the ones that fold.

A pixel shuffle permutes elements and a nearest resize repeats them, so any op applied to
each element on its own (ATen's ``pointwise`` tag, scalar operands) commutes with both; a
per-channel PReLU or gain commutes with a resize (channels are kept) and with a shuffle only
when the ``r²`` channels that meet in one output channel agree. Crops commute with a shuffle
by ``r`` times the amount. A mean over groups of a conv's output channels, and scalar
multiplies / adds next to a conv, fold into the conv's weights and bias.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import fx

from . import aten_ops as ops
from .conv_params import ConvParams
from .trace import shape_of

SUBPIXEL, RESIZE = "sub-pixel", "resize"
aten = torch.ops.aten

def operand(node: fx.Node) -> fx.Node:
    """The chain operand of an op between: the tensor input with the op's own shape."""
    if ops.crop_amounts(node) is not None or ops.prelu_weight(node) is not None:
        return ops.first_input(node)
    big = [t for t in ops.tensor_inputs(node) if shape_of(t) == shape_of(node)]
    return big[0] if len(big) == 1 else ops.first_input(node)


def prelu_slopes_equal(prelu: fx.Node, r2: int) -> bool:
    w = ops.stored_tensor(ops.prelu_weight(prelu))
    if w is None:
        return False
    w = w.reshape(-1, r2)
    return bool(torch.equal(w, w[:, :1].expand_as(w)))


def between_reason(node: fx.Node, chain: fx.Node, kind: str, r2: int) -> str | None:
    """None if ``node`` may sit between the pair (see the module docstring), else why not."""
    if node.target is aten.constant_pad_nd.default or \
            node.target is aten.slice.Tensor:
        crop = ops.crop_amounts(node)
        if crop is None:
            return None
        if isinstance(crop, str):
            return crop
        return None if kind == SUBPIXEL else "a crop between the resize and the convolution"
    if ops.is_identity(node):
        return None
    weight = ops.prelu_weight(node)
    if weight is not None:
        n = ops.numel(shape_of(weight))
        if n == 1 or kind == RESIZE:
            return None
        if not prelu_slopes_equal(node, r2):
            return (f"per-channel PReLU ({n} slopes) between the conv and the shuffle: the "
                    f"{r2} slopes that meet in each output channel differ")
        return None
    return ops.pointwise_reason(node, chain, spatial_ok=kind == RESIZE)


def group_mean(node: fx.Node) -> tuple[int, fx.Node, tuple[fx.Node, ...]] | None:
    """``(G, conv, (view, mean))`` when ``node`` averages a conv's output channels in ``G``
    groups: ``conv(x).view(N, G, C, H, W).mean(1)``; else None."""
    if not ops.is_op(node) or node.target is not aten.mean.dim:
        return None
    dims = list(node.args[1]) if len(node.args) > 1 else []
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    view = ops.first_input(node)
    if dims not in ([1], [-4]) or keep or not ops.is_op(view) or \
            view.target not in (aten.view.default, aten._unsafe_view.default):
        return None
    conv = ops.first_input(view)
    shape, grouped = shape_of(conv), shape_of(view)
    if not ops.is_conv(conv) or len(view.users) != 1 or grouped is None or len(grouped) != 5 \
            or shape is None or grouped[2:] != (shape[1] // grouped[1], *shape[2:]):
        return None
    return grouped[1], conv, (view, node)


_SCALAR_OPS = {aten.mul.Tensor: "mul", aten.mul_.Tensor: "mul", aten.mul.Scalar: "mul",
               aten.div.Tensor: "div", aten.div_.Tensor: "div", aten.div.Scalar: "div",
               aten.add.Tensor: "add", aten.add_.Tensor: "add", aten.add.Scalar: "add",
               aten.sub.Tensor: "sub", aten.sub_.Tensor: "sub", aten.sub.Scalar: "sub"}


def scalar_op(node: fx.Node) -> tuple[str, float] | None:
    """``("mul" | "div" | "add" | "sub", value)`` for ``x ∘ s`` with a stored one-element
    tensor or a number ``s`` second (``alpha`` 1), else None (``s * x`` is not folded: it
    stays in ``forward``, which is exact too)."""
    op = _SCALAR_OPS.get(node.target)
    if op is None or len(node.args) != 2 or node.kwargs.get("alpha", 1) != 1:
        return None
    other = node.args[1]
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        return op, float(other)
    t = ops.stored_tensor(other)
    if t is not None and t.numel() == 1 and t.is_floating_point():
        return op, float(t.detach().reshape(()))
    return None


def fold_scalars(params: ConvParams, folds: list[tuple[str, float, object]],
                 on_input: bool) -> ConvParams:
    """``params`` with the scalar ops applied to its output (weights and bias), or with
    ``on_input`` to its input (× ÷ scale the weights only)."""
    weight = params.weight.detach().clone()
    bias = params.bias.detach().clone() if params.bias is not None else None
    for op, value, _ in folds:
        if op in ("mul", "div"):
            factor = value if op == "mul" else 1.0 / value
            weight = weight * factor
            bias = bias * factor if bias is not None and not on_input else bias
        else:
            bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device) \
                if bias is None else bias
            bias = bias + (value if op == "add" else -value)
    return dataclasses.replace(params, weight=weight, bias=bias)


