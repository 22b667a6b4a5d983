"""What a node of a recorded ATen graph (:mod:`upconv.convert.trace`) computes.

Convolutions, pixel shuffles and resizes; the ops that commute with a pixel shuffle or a
nearest resize (pointwise ops, PReLU); crops; and readable names for reports.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
from torch import fx

from .trace import alias_mutation, innermost_call, shape_of

aten = torch.ops.aten

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "transposed",
              "output_padding", "groups")

#: resize op → mode (``F.interpolate``'s name for it)
RESIZE_MODES: dict[Any, str] = {}
for _names, _mode in (
    (("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d"), "nearest"),
    (("_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d"),
     "nearest-exact"),
    (("upsample_linear1d",), "linear"),
    (("upsample_bilinear2d", "_upsample_bilinear2d_aa"), "bilinear"),
    (("upsample_bicubic2d", "_upsample_bicubic2d_aa"), "bicubic"),
    (("upsample_trilinear3d",), "trilinear"),
):
    for _name in _names:
        _packet = getattr(aten, _name, None)
        for _overload in ("default", "vec"):
            if _packet is not None and hasattr(_packet, _overload):
                RESIZE_MODES[getattr(_packet, _overload)] = _mode

NEAREST_MODES = ("nearest", "nearest-exact")

#: ops that return their input's values unchanged (copies, aliases, no-op casts)
_IDENTITY = {aten.clone.default, aten.alias.default, aten.detach.default,
             aten.contiguous.default, aten.lift_fresh.default}


def is_op(node: object) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function"


def conv_args(node: fx.Node) -> dict[str, Any]:
    """``aten.convolution``'s arguments by name."""
    bound = dict(zip(_CONV_ARGS, node.args, strict=False))
    bound.update(node.kwargs)
    return bound


def is_conv(node: object) -> bool:
    """A 2-D forward convolution (``nn.Conv2d`` / ``F.conv2d``)."""
    if not is_op(node) or node.target is not aten.convolution.default:
        return False
    a = conv_args(node)
    return not a["transposed"] and len(a["stride"]) == 2


def is_transposed_conv(node: object) -> bool:
    return (is_op(node) and node.target is aten.convolution.default
            and bool(conv_args(node)["transposed"]))


def shuffle_factor(node: object) -> int | None:
    """The upscale factor of an ``aten.pixel_shuffle`` node, else None."""
    if is_op(node) and node.target is aten.pixel_shuffle.default:
        return int(node.args[1])
    return None


def resize_mode(node: object) -> str | None:
    """``"nearest"``, ``"bilinear"``, ... for a resize node, else None."""
    return RESIZE_MODES.get(node.target) if is_op(node) else None


def first_input(node: fx.Node) -> fx.Node | None:
    a = node.args[0] if node.args else None
    return a if isinstance(a, fx.Node) else None


def tensor_inputs(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if shape_of(a) is not None]


def stored_tensor(node: object) -> torch.Tensor | None:
    """The tensor behind a ``get_attr`` / constant node, through views of it; else None."""
    while is_op(node) and node.target in (aten.view.default, aten.reshape.default,
                                          aten._unsafe_view.default, aten.expand.default):
        node = node.args[0]
    if isinstance(node, fx.Node) and node.op in ("get_attr", "placeholder"):
        return node.meta.get("tensor")
    return None


def param_path(node: object) -> str | None:
    """The parameter / buffer path of a ``get_attr`` node, else None."""
    return str(node.target) if isinstance(node, fx.Node) and node.op == "get_attr" else None


def numel(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape is not None else 1


def is_identity(node: fx.Node) -> bool:
    """Ops that pass values through unchanged (copies, aliases, same-dtype casts)."""
    if node.target in _IDENTITY or shuffle_factor(node) == 1:
        return True
    if resize_mode(node) is not None and shape_of(node) == shape_of(first_input(node)):
        return True
    if node.target is aten._to_copy.default:
        src = first_input(node)
        return src is not None and src.meta.get("dtype") == node.meta.get("dtype")
    return False


def pointwise_reason(node: fx.Node, chain: fx.Node, spatial_ok: bool) -> str | None:
    """None if ``node`` applies the same function to every element of ``chain`` (its other
    tensor operands scalars, or — with ``spatial_ok`` — constant over H and W); else why not.

    Such ops commute with a pixel shuffle (a permutation of elements) and with a nearest
    resize (a replication of elements).
    """
    if node.target is alias_mutation:
        return "a view of it is modified in place"
    if not is_op(node) or torch.Tag.pointwise not in getattr(node.target, "tags", ()):
        return f"{readable(node)} is not an elementwise op"
    if torch.Tag.nondeterministic_seeded in node.target.tags:
        return f"{readable(node)} is random"
    for other in tensor_inputs(node):
        if other is chain:
            continue
        shape = shape_of(other)
        if numel(shape) == 1:
            continue
        if spatial_ok and shape is not None and (len(shape) < 2 or shape[-2:] == (1, 1)):
            continue
        return f"{readable(node)} with a second tensor of shape {shape}"
    return None


def prelu_weight(node: fx.Node) -> fx.Node | None:
    """The weight operand of an ``aten._prelu_kernel`` node, else None."""
    if is_op(node) and node.target is aten._prelu_kernel.default:
        return node.args[1]
    return None


def crop_amounts(node: fx.Node) -> tuple[int, int, int, int] | str | None:
    """``(top, bottom, left, right)`` for an op that only crops H / W by amounts that do not
    depend on the input size; a reason string for a crop that does; None for no crop op."""
    shape_in = shape_of(first_input(node))
    if node.target is aten.constant_pad_nd.default:
        pads = list(node.args[1])
        if any(p > 0 for p in pads):
            return None  # padding, not a crop
        pads += [0] * (2 * len(shape_in or ()) - len(pads))
        left, right, top, bottom = pads[:4]
        if any(pads[4:]):
            return "a crop of other dimensions than H and W"
        return (-top, -bottom, -left, -right)
    if node.target is aten.slice.Tensor and shape_in is not None:
        given = list(node.args[1:])
        dim, start, end, step = given + [0, None, None, 1][len(given):]
        dim = dim % len(shape_in)
        start = 0 if start is None else start
        size = shape_in[dim]
        if dim < len(shape_in) - 2:
            return None if (start == 0 and (end is None or end >= size) and step == 1) \
                else "a crop of other dimensions than H and W"
        if step != 1 or start < 0:
            return f"a slice with step {step} / start {start}"
        if end is None or end >= size:
            after = 0
        elif end < 0:
            after = -end
        else:
            return (f"a crop that ends at absolute index {end} (size {size}): it may not "
                    "hold for other input sizes")
        return (start, after, 0, 0) if dim == len(shape_in) - 2 else (0, 0, start, after)
    return None


_FRIENDLY = {
    aten.convolution.default: "F.conv2d",
    aten.pixel_shuffle.default: "F.pixel_shuffle",
    aten.constant_pad_nd.default: "F.pad",
    aten._prelu_kernel.default: "prelu",
    operator.getitem: "getitem",
    alias_mutation: "in-place write",
}


def readable(node: fx.Node) -> str:
    """A short user-facing name: ``F.interpolate(nearest)``, ``add``, ``conv_up1``, ..."""
    if node.op == "call_module":
        return str(node.target)
    if node.op == "get_attr":
        return str(node.target)
    if node.op == "placeholder":
        return "a model input" if "constant" not in node.meta else "a constant tensor"
    if node.op == "output":
        return "the model output"
    mode = resize_mode(node)
    if mode is not None:
        return f"F.interpolate({mode})"
    if node.target in _FRIENDLY:
        return _FRIENDLY[node.target]
    name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
    return name[:-1] if name.endswith("_") and not name.startswith("_") else name


def where(node: fx.Node) -> str:
    """``readable(node)`` plus the module whose forward ran it: ``F.pixel_shuffle in up.1``;
    the second and later calls of the same op there get ``#2``, ``#3``, ..."""
    call = innermost_call(node)
    scope = (call.path or type(call.module).__name__) if call is not None else "?"
    n = node.meta.get("ordinal", 0)
    return f"{readable(node)}{f'#{n + 1}' if n else ''} in {scope}"
