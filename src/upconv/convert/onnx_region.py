"""The value-by-value subgraph between the two halves of an upsampling pair.

Between a ``Conv`` and its pixel shuffle, or a nearest resize and its ``Conv``, exporters
leave a *region* of per-pixel ops fed only by the pair's tensor (and constants): a chain
(``Relu``, a learned ``Mul``) or a small DAG (``x·σ(x)`` for SiLU, GELU's
``x·½·(1 + erf(x/√2))`` before opset 20, Mish). Such a region computes the same function of
each pixel's channel vector wherever the pixel goes, so it commutes with a nearest resize, and
with a pixel shuffle when its constants agree on the conv channels an output channel reads.
:func:`region_from` finds it; :func:`emit` writes it again on another tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .conv_params import Unsupported
from .onnx_elementwise import BINARY, UNARY, Elementwise, classify
from .onnx_graph import SHAPE_READERS, GraphEditor, node_label


@dataclass
class Region:
    """Ops (in graph order) computing tensor ``sink`` from tensor ``source``; ``terminal`` is
    the one node outside the region that reads ``sink``."""

    source: str
    sink: str
    ops: list[Elementwise]
    terminal: onnx.NodeProto

    @property
    def is_chain(self) -> bool:
        """Does every op read the previous op's output (or ``source``) only?"""
        cur = self.source
        for e in self.ops:
            if e.data != cur or sum(i == cur for i in e.node.input) != 1:
                return False
            cur = e.node.output[0]
        return True


def region_from(editor: GraphEditor, source: str, channels: int | None,
                is_terminal: Callable[[onnx.NodeProto, str], bool], blocked: str) -> Region:
    """The value-by-value region fed by tensor ``source`` up to the one node for which
    ``is_terminal(node, tensor)`` holds. Any other reader of a region tensor makes it
    :class:`Unsupported`, with ``blocked.format(op=..., label=..., why=...)`` as the reason."""
    region = {source}
    ops: list[Elementwise] = []
    terminal: onnx.NodeProto | None = None
    sink = source
    for node in editor.graph.node:
        reads = [i for i in node.input if i in region]
        if not reads or node.op_type in SHAPE_READERS:
            continue
        if terminal is None and len(reads) == 1 and is_terminal(node, reads[0]):
            terminal, sink = node, reads[0]
            continue
        try:
            if terminal is not None:
                raise Unsupported(f"it reads {reads[0]!r} too")
            computed = [i for i in node.input if i and editor.constant(i) is None]
            if any(i not in region for i in computed):
                raise Unsupported("combined with another tensor")
            ops.append(_classify(editor, node, computed, channels))
        except Unsupported as why:
            raise Unsupported(blocked.format(op=node.op_type, label=node_label(node), why=why)
                              ) from None
        region.update(node.output)
    if terminal is None:
        raise Unsupported(blocked.format(op="nothing", label="nothing", why="no reader found"))
    for name in region:
        if name in editor.graph_outputs:
            raise Unsupported(f"{name!r} is also a graph output")
    return Region(source, sink, ops, terminal)


def _classify(editor: GraphEditor, node: onnx.NodeProto, computed: list[str],
              channels: int | None) -> Elementwise:
    if len(computed) == 1:
        return classify(editor.values, node, computed[0], channels,
                        editor.values.dims(computed[0]))
    op = node.op_type
    if op not in BINARY or op == "PRelu" or len(node.input) != 2:
        raise Unsupported(f"{op} of {len(computed)} tensors is not value by value")
    return Elementwise(node, "pointwise", 0)  # x op f(x): both operands from the region


def source_conv(editor: GraphEditor, start: str) -> onnx.NodeProto:
    """The ``Conv`` whose output every computed input of ``start``'s value-by-value producers
    leads back to; :class:`Unsupported` otherwise."""
    stack, seen, convs, walked = [start], set(), {}, []
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = editor.producer.get(name)
        if node is None:
            raise Unsupported("its input is not a Conv (it is a graph input)")
        if node.op_type == "Conv":
            convs[name] = node
            continue
        walked.append(node.op_type)
        if node.op_type not in UNARY | BINARY | {"Slice", "Pad"}:
            if walked[1:]:
                raise Unsupported(f"its input is not a Conv (it is {walked[0]} of a "
                                  f"{node.op_type} output)")
            raise Unsupported(f"its input is not a Conv (it is {node.op_type})")
        stack += [i for i in node.input if i and editor.constant(i) is None][:2]
    if len(convs) != 1:
        raise Unsupported(f"its input is not a Conv (it combines {len(convs)} Convs' outputs)")
    return next(iter(convs.values()))


def resolve(aliases: dict[str, str], name: str) -> str:
    """``name`` after following ``aliases`` (outputs of dropped ops → their inputs)."""
    while name in aliases:
        name = aliases[name]
    return name


def emit(editor: GraphEditor, ops: list[tuple[Elementwise, np.ndarray | None]],
         renamed: dict[str, str], aliases: dict[str, str], sink: str, y: str,
         label: str) -> list[onnx.NodeProto]:
    """Copies of ``ops`` (in order) reading ``renamed`` tensors under their new names (after
    ``aliases``); the op writing ``sink`` writes ``y``. Each op comes with its constant
    re-indexed per output channel ``(C,)``, or None to keep the op's own constant input."""
    renamed = dict(renamed)
    nodes = []
    for e, param in ops:
        op = e.node.op_type
        out = e.node.output[0]
        renamed[out] = y if out == sink else editor.fresh(f"{label}.{op.lower()}_out")
        inputs = [renamed.get(resolve(aliases, i), i) if i else i for i in e.node.input]
        if param is not None:
            other = 1 - e.data_index
            dtype = editor.constant(e.node.input[other]).dtype
            inputs[other] = editor.add_initializer(f"{label}.{op.lower()}_param",
                                                   param.astype(dtype).reshape(1, -1, 1, 1))
        node = helper.make_node(op, inputs, [renamed[out]],
                                name=editor.fresh(f"{label}.{op.lower()}"), domain=e.node.domain)
        node.attribute.extend(e.node.attribute)
        nodes.append(node)
    return nodes
