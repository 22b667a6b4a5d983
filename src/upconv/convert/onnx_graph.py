"""Reading and editing an ONNX graph: constants, producers/consumers, node replacement."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from .conv_params import ConvParams, Unsupported

# Nodes that read only a tensor's shape, and the integer arithmetic exporters do on shapes.
SHAPE_READERS = {"Shape", "Size"}
SHAPE_ARITHMETIC = SHAPE_READERS | {
    "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Cast", "Mul", "Add", "Sub",
    "Div", "Floor", "Ceil", "Identity", "Max", "Min", "Expand", "Range", "ConstantOfShape"}


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def node_label(node: onnx.NodeProto) -> str:
    """``name`` if the node has one, else ``OpType(output)``."""
    return node.name or f"{node.op_type}({node.output[0]})"


class GraphEditor:
    """Index of one ``onnx.GraphProto`` plus the replacements queued on it.

    Replacements are queued with :meth:`replace` and applied by :meth:`commit`, which keeps
    the node list topologically sorted (new nodes go where the last replaced node was) and
    drops the nodes that only fed replaced ones (e.g. the ``Shape`` arithmetic of a reshape).
    ``shapes`` (tensor name → inferred shape) and ``opset`` feed :attr:`values`, the
    constant / symbolic :class:`~upconv.convert.onnx_values.GraphValues` of the graph.
    """

    def __init__(self, graph: onnx.GraphProto, shapes: dict[str, tuple] | None = None,
                 opset: int = 17) -> None:
        self.graph = graph
        self.shapes = shapes or {}
        self.opset = opset
        self._index()

    def set_shapes(self, shapes: dict[str, tuple]) -> None:
        """New inferred shapes (after a commit changed the graph)."""
        self.shapes = shapes
        self._index()

    def _index(self) -> None:
        graph = self.graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
        self.initializers = {t.name: t for t in graph.initializer}
        self.graph_outputs = {o.name for o in graph.output}
        self._names = set(self.producer) | set(self.initializers) | {i.name for i in graph.input}
        self._names |= {n.name for n in graph.node}
        # Nodes are keyed by their outputs (unique in an SSA graph), not by Python identity.
        self._removed: set[tuple[str, ...]] = set()
        self._inserted: dict[tuple[str, ...], list[onnx.NodeProto]] = {}
        self._new_initializers: list[onnx.TensorProto] = []
        from .onnx_values import GraphValues

        self.values = GraphValues(list(graph.node), self.producer, self.initializers, self.shapes,
                                  self.opset)

    def fresh(self, stem: str) -> str:
        """A tensor / node name not used in the graph yet."""
        name, i = stem, 1
        while name in self._names:
            name, i = f"{stem}_{i}", i + 1
        self._names.add(name)
        return name

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a tensor that depends on constants only (initializers, ``Constant``,
        ``Identity`` aliases, folded nodes), else None."""
        return self.values.constant(name)

    def data_consumers(self, name: str) -> list[onnx.NodeProto]:
        """The nodes reading tensor ``name``'s values (not just its shape)."""
        return [n for n in self.consumers.get(name, []) if n.op_type not in SHAPE_READERS]

    def single_use(self, name: str) -> bool:
        """Is tensor ``name``'s value read by exactly one node and not a graph output?"""
        return name not in self.graph_outputs and len(self.data_consumers(name)) == 1

    def shape_uses_confined(self, names: set[str], nodes: list[onnx.NodeProto]) -> bool:
        """Do the ``Shape`` / ``Size`` readers of tensors ``names`` feed only ``nodes`` (through
        shape arithmetic)? Then replacing ``nodes`` leaves no reader of a removed tensor."""
        site = {tuple(n.output) for n in nodes}
        stack = [c for name in names for c in self.consumers.get(name, [])
                 if c.op_type in SHAPE_READERS]
        seen: set[tuple[str, ...]] = set()
        while stack:
            node = stack.pop()
            for out in node.output:
                users = self.consumers.get(out, [])
                if out in self.graph_outputs or not users:
                    return False
                for user in users:
                    key = tuple(user.output)
                    if key in site or key in seen:
                        continue
                    if user.op_type not in SHAPE_ARITHMETIC:
                        return False
                    seen.add(key)
                    stack.append(user)
        return True

    def add_initializer(self, stem: str, value: np.ndarray) -> str:
        name = self.fresh(stem)
        self._new_initializers.append(numpy_helper.from_array(value, name))
        return name

    def int64(self, stem: str, values: list[int]) -> str:
        """A new int64 initializer (shape / index constants)."""
        return self.add_initializer(stem, np.asarray(values, dtype=np.int64))

    def is_removed(self, node: onnx.NodeProto) -> bool:
        return tuple(node.output) in self._removed

    def replace(self, old: list[onnx.NodeProto], new: list[onnx.NodeProto]) -> None:
        """Queue: drop ``old`` (in graph order, the last one marks the spot), insert ``new``."""
        self._removed.update(tuple(n.output) for n in old)
        self._inserted[tuple(old[-1].output)] = new

    def commit(self) -> None:
        """Apply the queued replacements; drop what only fed replaced nodes, and initializers
        and value_info left unused."""
        nodes: list[onnx.NodeProto] = []
        for node in self.graph.node:
            nodes.extend(self._inserted.get(tuple(node.output), []))
            if tuple(node.output) not in self._removed:
                nodes.append(node)
        nodes = self._without_dead_feeders(nodes)
        self.graph.ClearField("node")
        self.graph.node.extend(nodes)
        self.graph.initializer.extend(self._new_initializers)
        used = {name for n in nodes for name in n.input} | self.graph_outputs
        produced = {name for n in nodes for name in n.output}
        keep_init = [t for t in self.graph.initializer if t.name in used]
        self.graph.ClearField("initializer")
        self.graph.initializer.extend(keep_init)
        keep_inputs = [i for i in self.graph.input
                       if i.name not in self.initializers or i.name in used]
        self.graph.ClearField("input")
        self.graph.input.extend(keep_inputs)
        keep_vi = [v for v in self.graph.value_info if v.name in produced]
        self.graph.ClearField("value_info")
        self.graph.value_info.extend(keep_vi)
        self._index()

    def _without_dead_feeders(self, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
        """``nodes`` less those whose outputs only fed removed nodes (transitively)."""
        def feeders(dead_nodes) -> set[tuple[str, ...]]:
            return {tuple(self.producer[i].output) for n in dead_nodes for i in n.input
                    if i in self.producer}

        suspects = feeders(n for n in self.graph.node if tuple(n.output) in self._removed)
        while suspects:
            used = {i for n in nodes for i in n.input} | self.graph_outputs
            dead = [n for n in nodes if tuple(n.output) in suspects and not set(n.output) & used]
            if not dead:
                break
            gone = {tuple(n.output) for n in dead}
            nodes = [n for n in nodes if tuple(n.output) not in gone]
            suspects = feeders(dead)
        return nodes

    def only_consumer(self, name: str) -> onnx.NodeProto:
        """The one node reading tensor ``name``'s values (``Shape`` readers aside, see
        :meth:`shape_uses_confined`); :class:`Unsupported` otherwise."""
        users = self.data_consumers(name)
        if name in self.graph_outputs:
            raise Unsupported(f"{name!r} is also a graph output")
        if len(users) != 1:
            raise Unsupported(f"{name!r} has {len(users)} consumers (conv output used elsewhere)")
        return users[0]

    def conv_params(self, node: onnx.NodeProto, in_shape: tuple | None = None) -> ConvParams:
        """A ``Conv`` node's constant weights and settings as :class:`ConvParams`."""
        a = attributes(node)
        weight = self.constant(node.input[1])
        if weight is None:
            raise Unsupported("conv weight is computed at run time, not an initializer")
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = self.constant(node.input[2])
            if bias is None:
                raise Unsupported("conv bias is computed at run time, not an initializer")
        if weight.ndim != 4:
            raise Unsupported(f"not a 2-D convolution (weight shape {weight.shape})")
        kh, kw = weight.shape[2:]
        auto_pad = a.get("auto_pad", "NOTSET")
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            extra = auto_pad == "SAME_LOWER"  # the odd extra pixel goes before
            th, tw = (kh - 1 + extra) // 2, (kw - 1 + extra) // 2
            pad = (th, kh - 1 - th, tw, kw - 1 - tw)
        elif auto_pad == "VALID":
            pad = (0, 0, 0, 0)
        else:
            t, le, b, r = a.get("pads", [0, 0, 0, 0])
            pad = (t, b, le, r)
        return ConvParams(
            torch.from_numpy(np.array(weight)),
            None if bias is None else torch.from_numpy(np.array(bias)),
            tuple(a.get("strides", [1, 1])), pad, tuple(a.get("dilations", [1, 1])),
            int(a.get("group", 1)))


def conv_transpose_nodes(
    editor: GraphEditor, x: str, y: str, weight: np.ndarray, bias: np.ndarray | None,
    stride: tuple[int, int], pad: tuple[int, int, int, int], label: str, group: int = 1,
) -> list[onnx.NodeProto]:
    """``ConvTranspose`` (+ a periodic-bias ``Add``) computing ``y`` from ``x``.

    ``weight`` is ``(Cin, C / group, Kh, Kw)``; ``pad`` is ``(top, bottom, left, right)``
    (crops of the output); ``bias`` is ``(C,)`` or periodic ``(C, bh, bw)``
    (with ``bh, bw`` the stride, and crops that are multiples of it, so phases stay aligned).
    A periodic bias is tiled to the output's size at run time (``Shape → Gather → Div →
    Concat → Tile``, valid at every opset), so dynamic sizes keep working.
    """
    top, bottom, left, right = pad
    w_name = editor.add_initializer(f"{label}.deconv_weight", weight)
    inputs = [x, w_name]
    periodic = bias is not None and bias.ndim == 3
    if bias is not None and not periodic:
        inputs.append(editor.add_initializer(f"{label}.deconv_bias", bias))
    out = editor.fresh(f"{label}.deconv_out") if periodic else y
    nodes = [helper.make_node(
        "ConvTranspose", inputs, [out], name=editor.fresh(f"{label}.deconv"),
        kernel_shape=list(weight.shape[2:]), strides=list(stride),
        pads=[top, left, bottom, right], dilations=[1, 1], group=group)]
    if periodic:
        if bias.shape[1:] != tuple(stride) or top % stride[0] or left % stride[1] \
                or bottom % stride[0] or right % stride[1]:
            raise ValueError(f"a periodic bias {bias.shape} needs crops {pad} that are "
                             f"multiples of the stride {stride}")
        b_name = editor.add_initializer(f"{label}.periodic_bias", np.ascontiguousarray(bias[None]))
        shape, hw, blocks, reps, tiled = (editor.fresh(f"{label}.{s}") for s in
                                          ("y_shape", "y_hw", "y_blocks", "tile_repeats",
                                           "bias_tiled"))
        nodes += [
            helper.make_node("Shape", [out], [shape], name=editor.fresh(f"{label}.shape")),
            helper.make_node("Gather", [shape, editor.int64(f"{label}.hw_axes", [2, 3])],
                             [hw], axis=0, name=editor.fresh(f"{label}.hw")),
            helper.make_node("Div", [hw, editor.int64(f"{label}.period", list(stride))], [blocks],
                             name=editor.fresh(f"{label}.blocks")),
            helper.make_node("Concat", [editor.int64(f"{label}.ones", [1, 1]), blocks], [reps],
                             axis=0, name=editor.fresh(f"{label}.repeats")),
            helper.make_node("Tile", [b_name, reps], [tiled], name=editor.fresh(f"{label}.tile")),
            helper.make_node("Add", [out, tiled], [y], name=editor.fresh(f"{label}.bias_add")),
        ]
    return nodes
