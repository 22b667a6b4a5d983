"""torch.fx site finding: nearest resize (integer scale) → same-padded conv, for the cost walker.

The resize may be ``nn.Upsample`` or ``F.interpolate`` with ``scale_factor`` or ``size``; the
scale is read from the shapes :class:`~torch.fx.passes.shape_prop.ShapeProp` recorded on the
example input, and must be an integer on both axes (and equal ``scale_factor`` when given).
"""

from __future__ import annotations

from torch import fx

from ..shapes import IntPair, scale_pair
from .conv_params import Unsupported, same_padding_or_reason
from .fx_nodes import (
    FxSite,
    call_count,
    conv_params,
    interpolation,
    is_conv,
    node_path,
    tensor_shape,
)
from .report import SkippedSite

KIND = "resize"
NEAREST_MODES = ("nearest", "nearest-exact")


def _integer_scale(resize: fx.Node, spec: dict) -> IntPair:
    """The resize's integer ``(rh, rw)``; :class:`Unsupported` otherwise."""
    factor = spec["scale_factor"]
    if factor is not None and not isinstance(factor, fx.Node):
        try:
            scale_pair(factor, "scale_factor")
        except (TypeError, ValueError):
            raise Unsupported(f"non-integer scale {factor!r}") from None
    src = resize.args[0] if resize.args else resize.kwargs.get("input")
    shape_in = tensor_shape(src) if isinstance(src, fx.Node) else None
    shape_out = tensor_shape(resize)
    if shape_in is None or shape_out is None or len(shape_in) != 4:
        raise Unsupported("input/output shapes unknown or not 4-D (N, C, H, W)")
    h, w = shape_in[2:]
    oh, ow = shape_out[2:]
    if oh % h or ow % w:
        raise Unsupported(f"non-integer scale: {h}x{w} → {oh}x{ow}")
    scale = (oh // h, ow // w)
    if factor is not None and not isinstance(factor, fx.Node) and scale != scale_pair(factor):
        raise Unsupported(f"scale_factor {factor!r} does not match the shapes {h}x{w} → {oh}x{ow}")
    return scale


def resize_site(gm: fx.GraphModule, resize: fx.Node) -> FxSite | SkippedSite | None:
    """The convertible ``resize → conv`` chain starting at ``resize``, why it is left alone
    (a :class:`SkippedSite`), or None when ``resize`` is no resize. Needs ``ShapeProp`` shapes."""
    spec = interpolation(gm, resize)
    if spec is None:
        return None
    where = node_path(resize)
    try:
        if spec["mode"] not in NEAREST_MODES:
            raise Unsupported(
                f"{spec['mode']} resize (only nearest reduces to a deconvolution)")
        users = list(resize.users)
        if len(users) != 1:
            raise Unsupported(f"resize output has {len(users)} consumers, not one conv")
        conv_node = users[0]
        if not is_conv(gm, conv_node):
            raise Unsupported(
                f"its consumer is not a convolution (it is {node_path(conv_node)})")
        x = conv_node.args[0] if conv_node.args else conv_node.kwargs.get("input")
        if x is not resize:
            raise Unsupported("the resize feeds the conv's weights, not its input")
        where = f"{node_path(resize)} → {node_path(conv_node)}"
        if conv_node.op == "call_module" and call_count(gm, conv_node.target) != 1:
            raise Unsupported("the conv module is called at more than one place")
        scale = _integer_scale(resize, spec)
        conv = conv_params(gm, conv_node)
        pad = same_padding_or_reason(conv)
    except Unsupported as why:
        return SkippedSite(where, KIND, str(why))
    return FxSite(KIND, resize, conv_node, conv_node, conv, scale, pad, where)
