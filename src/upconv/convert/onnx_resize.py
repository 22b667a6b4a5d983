"""ONNX rewrite: nearest ``Resize`` / ``Upsample`` ``→ [elementwise ops] → Conv`` ⇒
``[elementwise ops →] ConvTranspose``.

Only resizes that read source pixel ``floor(dst / r)`` are nearest-neighbour repetition, the
resize a deconvolution can absorb. :func:`reduces_to_floor` decides that exactly for every
``coordinate_transformation_mode`` × ``nearest_mode`` pair and integer ``r``; ``Upsample``
(opset 7–9) and ``Resize``-10 repeat pixels (checked in ONNX Runtime). The scale comes from
the ``scales`` attribute / input or from ``sizes``, constant-folded, or computed from
``Shape`` chains and then an integer only when it is one for every input size (a formula in
the input's dims that simplifies to an integer, see
:class:`~upconv.convert.onnx_values.GraphValues`).

Value-by-value ops between the resize and the conv (``LeakyRelu``, ``PRelu``, per-channel
``Mul`` / ``Add``, …) commute with a nearest resize (it only repeats values), so they move
before it, onto the low-resolution tensor, and the pair ``Resize + Conv`` becomes the
``ConvTranspose``. A grouped conv becomes a grouped ``ConvTranspose``; a conv whose padding
does not keep the size is a same conv plus a crop of the output.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import onnx
import sympy
import torch

from .conv_params import ConvParams, Unsupported
from .deconv_factory import resize_deconv
from .onnx_crop import same_padding_and_crop
from .onnx_graph import GraphEditor, attributes, conv_transpose_nodes, node_label
from .onnx_region import emit, region_from, resolve
from .onnx_values import as_int, canon
from .report import ConversionReport, ConvertedSite

KIND = "resize"
ALGORITHM = "ConvTranspose"

# dst = r·i + a maps to source i + offset(a) (exactly, at integer scale r, output = r·input).
_OFFSETS = {
    "half_pixel": lambda a, r: (a + Fraction(1, 2)) / r - Fraction(1, 2),
    "pytorch_half_pixel": lambda a, r: (a + Fraction(1, 2)) / r - Fraction(1, 2),
    "half_pixel_symmetric": lambda a, r: (a + Fraction(1, 2)) / r - Fraction(1, 2),
    "asymmetric": lambda a, r: Fraction(a, r),
    "tf_half_pixel_for_nn": lambda a, r: (a + Fraction(1, 2)) / r,
}


def _round(x: Fraction, nearest_mode: str) -> int:
    if nearest_mode == "floor":
        return math.floor(x)
    if nearest_mode == "ceil":
        return math.ceil(x)
    if x - math.floor(x) == Fraction(1, 2):
        return math.floor(x) if nearest_mode == "round_prefer_floor" else math.ceil(x)
    return round(x)


def reduces_to_floor(coordinate_mode: str, nearest_mode: str, scale: int) -> bool:
    """Does an ONNX nearest ``Resize`` by integer ``scale`` read source ``floor(dst / scale)``?

    True when every in-block offset rounds to 0, for every input length. ``align_corners``
    maps ``dst = r·i + a`` to ``i + (a·(L-1) - i·(r-1)) / (r·L - 1)``: the offset stays inside
    ``(-1/2, 1/2)`` for all ``L`` only when ``r <= 2``, so it qualifies there with the rounding
    modes. ``tf_crop_and_resize`` depends on the ROI and never qualifies.
    """
    if coordinate_mode == "align_corners":
        return scale == 1 or (scale == 2 and nearest_mode.startswith("round_prefer"))
    offset = _OFFSETS.get(coordinate_mode)
    if offset is None:
        return False
    return all(_round(offset(a, scale), nearest_mode) == 0 for a in range(scale))


def _factors(editor: GraphEditor, resize: onnx.NodeProto, a: dict) -> dict[int, sympy.Expr]:
    """Scale per axis of a ``Resize`` / ``Upsample`` as exact sympy numbers or formulas."""
    legacy = resize.op_type == "Upsample" or len(resize.input) == 2
    values = editor.values
    if legacy:
        if "scales" in a:  # Upsample-7
            return {ax: sympy.Rational(float(v)) for ax, v in enumerate(a["scales"])}
        scales = values.symbolic(resize.input[1])
        if scales is None:
            raise Unsupported("scales are computed at run time and not known for all sizes")
        return dict(enumerate(np.asarray(scales).ravel()))
    axes = [int(ax) % 4 for ax in a.get("axes", [0, 1, 2, 3])]
    scales = values.symbolic(resize.input[2]) if len(resize.input) > 2 and resize.input[2] \
        else None
    if scales is not None and scales.size:
        return dict(zip(axes, np.asarray(scales).ravel(), strict=True))
    sizes = values.symbolic(resize.input[3]) if len(resize.input) > 3 else None
    if sizes is None:
        raise Unsupported("scales/sizes are computed at run time and not known for all sizes")
    if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported("keep_aspect_ratio_policy other than stretch")
    dims = values.dims(resize.input[0])
    if dims is None:
        raise Unsupported("sizes= resize on an input of unknown rank")
    return {ax: canon(s / dims[ax])
            for ax, s in zip(axes, np.asarray(sizes).ravel(), strict=True)}


def _spatial_scale(editor: GraphEditor, resize: onnx.NodeProto, a: dict) -> tuple[int, int]:
    """The resize's integer ``(rh, rw)``; :class:`Unsupported` when it is not one."""
    factors = _factors(editor, resize, a)
    factors = {ax: canon(f) for ax, f in factors.items()}
    for ax, f in sorted(factors.items()):
        if f.free_symbols:
            raise Unsupported(f"its scale on axis {ax} ({_fmt(f)}) is not the same for every "
                              "input size (the input size is not static, or the sizes come "
                              "from another tensor's shape)")
    if factors.get(0, 1) != 1 or factors.get(1, 1) != 1:
        raise Unsupported("resizes the batch or channel axis")
    rh, rw = factors.get(2, sympy.Integer(1)), factors.get(3, sympy.Integer(1))
    if as_int(rh) is None or as_int(rw) is None or rh < 1 or rw < 1:
        raise Unsupported(f"non-integer scale ({_fmt(rh)}, {_fmt(rw)})")
    return int(rh), int(rw)


def _fmt(v: sympy.Expr) -> str:
    return f"{float(v):g}" if v.is_number else str(v)


def _is_conv_input(node: onnx.NodeProto, tensor: str) -> bool:
    return node.op_type == "Conv" and node.input[0] == tensor


def _mode_check(resize: onnx.NodeProto, a: dict, scale: tuple[int, int]) -> str:
    """Checks the resize repeats pixels; returns how it does (for the report)."""
    if resize.op_type == "Upsample" or len(resize.input) == 2:
        return f"{resize.op_type}-{'7' if 'scales' in a else '9/10'} nearest"
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    nearest = a.get("nearest_mode", "round_prefer_floor")
    if not all(reduces_to_floor(ctm, nearest, r) for r in scale):
        raise Unsupported(f"coordinate_transformation_mode={ctm} with nearest_mode="
                          f"{nearest} does not read floor(dst / {max(scale)})")
    return f"{ctm}, {nearest}"


def rewrite_resize(editor: GraphEditor, report: ConversionReport) -> None:
    """Queue a rewrite of every nearest ``Resize`` / ``Upsample`` whose only consumer is a
    convertible Conv (through value-by-value ops); report the rest."""
    for resize in editor.graph.node:
        if resize.op_type not in ("Resize", "Upsample") or resize.domain not in ("", "ai.onnx"):
            continue
        a = attributes(resize)
        where = node_label(resize)
        try:
            mode = a.get("mode", "nearest")
            if mode != "nearest":
                raise Unsupported(f"{mode} resize (only nearest reduces to a deconvolution)")
            dims = editor.values.dims(resize.input[0])
            channels = None if dims is None else as_int(dims[1])
            region = region_from(editor, resize.output[0], channels, _is_conv_input,
                                 "its consumer is not a Conv input (it is {op}: {why})")
            conv, ops = region.terminal, region.ops
            where = " → ".join([where, *(node_label(e.node) for e in ops), node_label(conv)])
            if any(e.kind == "crop" for e in ops):
                raise Unsupported("a crop of the resized tensor does not commute with the conv")
            if editor.is_removed(conv):
                raise Unsupported("the Conv is already part of another converted site")
            replaced = [resize, *(e.node for e in ops), conv]
            if not editor.shape_uses_confined({o for n in replaced[:-1] for o in n.output},
                                              replaced):
                raise Unsupported("the shape of the resized tensor is used elsewhere")
            scale = _spatial_scale(editor, resize, a)
            how = _mode_check(resize, a, scale)
            params = editor.conv_params(conv)
            weight, bias, crops = _deconv(params, scale)
        except Unsupported as why:
            report.skip(where, KIND, str(why))
            continue
        label = conv.name or conv.output[0]
        x = resize.input[0]
        pre = []
        ops_to_move = [e for e in ops if e.kind != "identity"]
        aliases = {e.node.output[0]: e.data for e in ops if e.kind == "identity"}
        if ops_to_move:  # the value-by-value ops, on the low-resolution input
            x = editor.fresh(f"{label}.low_res_in")
            pre = emit(editor, [(e, None) for e in ops_to_move],
                       {resize.output[0]: resize.input[0]}, aliases,
                       resolve(aliases, region.sink), x, label)
        nodes = pre + conv_transpose_nodes(editor, x, conv.output[0], weight, bias, scale,
                                           crops, label, params.groups)
        editor.replace([resize, *(e.node for e in ops), conv], nodes)
        notes = [how, *(f"{e.node.op_type} moved before" for e in ops_to_move)]
        if params.groups > 1:
            notes.append(f"groups={params.groups}")
        report.add_converted(ConvertedSite(
            nodes[len(pre)].name, KIND, scale, params.kernel_size,
            tuple(int(k) for k in weight.shape[2:]), ALGORITHM,
            "none" if bias is None else "per-channel", f"{where} ({', '.join(notes)})"))


def _deconv(params: ConvParams, scale: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int, int, int]]:
    """ConvTranspose weight ``(Cin, C / g, ...)``, bias and crops for resize + ``params``."""
    pad, extra = same_padding_and_crop(params, np.zeros(4, np.int64))
    groups = params.groups
    cout = params.weight.shape[0]
    if cout % groups:
        raise Unsupported(f"groups={groups} does not divide {cout} output channels")
    part = cout // groups
    deconvs = []
    for g in range(groups):
        rows = slice(g * part, (g + 1) * part)
        p = dataclasses.replace(
            params, groups=1, padding=pad, weight=params.weight[rows],
            bias=None if params.bias is None else params.bias[rows])
        deconvs.append(resize_deconv(p, scale, "auto"))
    top, bottom, left, right = deconvs[0].padding
    crops = (top + extra[0], bottom + extra[1], left + extra[2], right + extra[3])
    weight = torch.cat([d.weight.detach() for d in deconvs]).numpy()
    bias = None if params.bias is None else torch.cat([d.bias.detach() for d in deconvs]).numpy()
    return weight, bias, crops
