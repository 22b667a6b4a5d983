"""A pixel shuffle of a sum: ``DepthToSpace(conv(x) + t)`` ⇒ ``ConvTranspose(x) + DepthToSpace(t)``.

A shuffle only moves values, so it distributes over an elementwise sum of two tensors of the
same shape. PLKSR / RealPLKSR end with ``pixel_shuffle(feats(x) + repeat_interleave(x))``:
the conv half becomes the deconvolution, the other addend is shuffled on its own (for PLKSR
a cheap shuffle of the input repeated, i.e. its nearest upsampling). The two addends must
provably have the same shape for every input size (no broadcasting), see
:meth:`~upconv.convert.onnx_values.GraphValues.dims`.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import sympy
from onnx import helper

from .conv_params import Unsupported
from .onnx_graph import GraphEditor, node_label
from .onnx_region import source_conv
from .onnx_shuffle import ShuffleSite


@dataclass(frozen=True)
class SumSplit:
    """``add`` (``Add`` / ``Sub``) reads the conv's path as input ``side``, ``other`` beside."""

    add: onnx.NodeProto
    side: int
    conv: onnx.NodeProto

    @property
    def addend(self) -> str:
        return self.add.input[self.side]

    @property
    def other(self) -> str:
        return self.add.input[1 - self.side]

    def reads_addend(self, node: onnx.NodeProto, tensor: str) -> bool:
        return tuple(node.output) == tuple(self.add.output) and tensor == self.addend


def split_sum(editor: GraphEditor, site: ShuffleSite, why: Unsupported) -> SumSplit:
    """The shuffle's input as a conv's path plus another tensor; ``why`` again otherwise."""
    add = editor.producer.get(site.start)
    if add is None or add.op_type not in ("Add", "Sub") or len(add.input) != 2 \
            or len(site.nodes) != 1 or site.nodes[0].op_type != "DepthToSpace" \
            or add.input[0] == add.input[1] \
            or any(editor.constant(i) is not None for i in add.input):
        raise why
    for side in (0, 1):
        try:
            conv = source_conv(editor, add.input[side])
        except Unsupported:
            continue
        a, b = (editor.values.dims(i) for i in add.input)
        if a is None or b is None or len(a) != len(b) or any(
                sympy.simplify(x - y) != 0 for x, y in zip(a, b, strict=True)):
            raise Unsupported(f"it is {add.op_type} of a Conv's output and another tensor whose "
                              "shape is not provably the same (a shuffle does not distribute "
                              "over broadcasting)")
        return SumSplit(add, side, conv)
    raise why


def emit_sum(editor: GraphEditor, split: SumSplit, site: ShuffleSite, deconv_out: str,
             label: str) -> list[onnx.NodeProto]:
    """The other addend shuffled by a copy of the site's ``DepthToSpace``, then the sum of
    ``deconv_out`` and it (in the original operand order) writing the site's output."""
    d2s = site.nodes[0]
    shuffled = editor.fresh(f"{label}.other_addend_shuffled")
    copy = helper.make_node("DepthToSpace", [split.other], [shuffled],
                            name=editor.fresh(f"{node_label(d2s)}.other_addend"))
    copy.attribute.extend(d2s.attribute)
    operands = [deconv_out, shuffled] if split.side == 0 else [shuffled, deconv_out]
    total = helper.make_node(split.add.op_type, operands, [site.end],
                             name=editor.fresh(f"{label}.{split.add.op_type.lower()}"))
    return [copy, total]
