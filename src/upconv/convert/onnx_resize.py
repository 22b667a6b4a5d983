"""ONNX rewrite: ``Resize`` (nearest, integer scale) ``→ Conv`` (same-padded) ⇒ ``ConvTranspose``.

Only resizes that read source pixel ``floor(dst / r)`` are nearest-neighbour repetition, the
resize a deconvolution can absorb. :func:`reduces_to_floor` decides that exactly for every
``coordinate_transformation_mode`` × ``nearest_mode`` pair and integer ``r``.
"""

from __future__ import annotations

import math
from fractions import Fraction

from .conv_params import Unsupported
from .deconv_factory import resize_deconv
from .onnx_graph import GraphEditor, attributes, conv_transpose_nodes, node_label
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


def _spatial_scale(editor: GraphEditor, resize, a: dict, in_shape) -> tuple[int, int]:
    """The resize's integer ``(rh, rw)`` from constant ``scales`` or ``sizes``."""
    axes = list(a.get("axes", [0, 1, 2, 3]))
    scales = editor.constant(resize.input[2]) if len(resize.input) > 2 else None
    if scales is not None and scales.size:
        factors = dict(zip(axes, (float(s) for s in scales), strict=True))
    else:
        sizes = editor.constant(resize.input[3]) if len(resize.input) > 3 else None
        if sizes is None:
            raise Unsupported("scales/sizes are computed at run time")
        if in_shape is None or any(not isinstance(in_shape[ax], int) for ax in axes):
            raise Unsupported("sizes= resize on an input whose size is not static")
        factors = {ax: float(s) / in_shape[ax] for ax, s in zip(axes, sizes, strict=True)}
        if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise Unsupported("keep_aspect_ratio_policy other than stretch")
    if factors.get(0, 1.0) != 1.0 or factors.get(1, 1.0) != 1.0:
        raise Unsupported("resizes the batch or channel axis")
    rh, rw = factors.get(2, 1.0), factors.get(3, 1.0)
    if not (rh.is_integer() and rw.is_integer() and rh >= 1 and rw >= 1):
        raise Unsupported(f"non-integer scale ({rh:g}, {rw:g})")
    return int(rh), int(rw)


def rewrite_resize(editor: GraphEditor, report: ConversionReport, shapes: dict) -> None:
    """Queue a rewrite of every nearest ``Resize`` whose only consumer is a convertible Conv.

    ``shapes`` maps tensor names to inferred shapes (ints or dim names), for ``sizes`` inputs.
    """
    for resize in editor.graph.node:
        if resize.op_type != "Resize" or resize.domain not in ("", "ai.onnx"):
            continue
        a = attributes(resize)
        where = node_label(resize)
        try:
            if len(resize.input) < 3:
                raise Unsupported("Resize-10 (no coordinate mode): re-export with opset >= 11")
            mode = a.get("mode", "nearest")
            if mode != "nearest":
                raise Unsupported(f"{mode} resize (only nearest reduces to a deconvolution)")
            conv = editor.only_consumer(resize.output[0])
            if conv.op_type != "Conv" or conv.input[0] != resize.output[0]:
                raise Unsupported(f"its consumer is not a Conv input (it is {conv.op_type})")
            where = f"{where} → {node_label(conv)}"
            if editor.is_removed(conv):
                raise Unsupported("the Conv is already part of another converted site")
            scale = _spatial_scale(editor, resize, a, shapes.get(resize.input[0]))
            ctm = a.get("coordinate_transformation_mode", "half_pixel")
            nearest = a.get("nearest_mode", "round_prefer_floor")
            if not all(reduces_to_floor(ctm, nearest, r) for r in scale):
                raise Unsupported(f"coordinate_transformation_mode={ctm} with nearest_mode="
                                  f"{nearest} does not read floor(dst / {max(scale)})")
            params = editor.conv_params(conv)
            deconv = resize_deconv(params, scale, "auto")
        except Unsupported as why:
            report.skip(where, KIND, str(why))
            continue
        bias = None if deconv.bias is None else deconv.bias.detach().numpy()
        nodes = conv_transpose_nodes(editor, resize.input[0], conv.output[0],
                                     deconv.weight.detach().numpy(), bias, deconv.stride,
                                     deconv.padding, conv.name or conv.output[0])
        editor.replace([resize, conv], nodes)
        report.add_converted(ConvertedSite(
            nodes[0].name, KIND, scale, params.kernel_size, deconv.kernel_size, ALGORITHM,
            "none" if bias is None else "per-channel", f"{where} ({ctm}, {nearest})"))
