"""Find every pixel shuffle in an ONNX graph, whatever ops the exporter spelled it with.

``DepthToSpace`` (opset ≥ 11 exports), or ``[Unsqueeze →] Reshape → Transpose → Reshape
[→ Reshape → Squeeze]`` (opset 9/10 exports of ``pixel_shuffle``, and hand-written
``view``/``permute`` or einops shuffles), with reshape targets that are constants or computed
from ``Shape`` / ``Gather`` / ``Concat`` chains. A run of such data-movement ops is followed
from its first op; :class:`~upconv.convert.onnx_layout.Layout` says after each op whether the
run so far is a pixel shuffle, and the longest run that is becomes a :class:`ShuffleSite`.
A run that is not one is reported when it contains a ``DepthToSpace`` or moves channel
digits into the spatial axes (a tiling, say); other runs (attention reshapes, flattening)
are not upsampling candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .onnx_elementwise import BINARY, UNARY
from .onnx_graph import GraphEditor, attributes, node_label
from .onnx_layout import Layout, NotAShuffle, ShuffleForm
from .onnx_values import as_int, dim_symbol

CHAIN_OPS = {"Reshape", "Transpose", "Unsqueeze", "Squeeze", "DepthToSpace", "Identity"}


@dataclass(frozen=True)
class ShuffleSite:
    """``nodes`` turn tensor ``start`` (N, K, H, W) into ``end`` as the shuffle ``form``."""

    start: str
    nodes: tuple[onnx.NodeProto, ...]
    form: ShuffleForm

    @property
    def end(self) -> str:
        return self.nodes[-1].output[0]

    @property
    def label(self) -> str:
        names = [node_label(n) for n in self.nodes]
        return names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"


@dataclass(frozen=True)
class NotShuffled:
    """A ``DepthToSpace`` run that is not a pixel shuffle of a 4-D tensor, and why; ``d2s``
    names the ``DepthToSpace`` nodes it covers."""

    start: str
    label: str
    reason: str
    d2s: tuple[str, ...] = ()


def find_shuffles(editor: GraphEditor) -> list[ShuffleSite | NotShuffled]:
    """Every pixel-shuffle run (longest first match per run head) in graph order."""
    found: list[ShuffleSite | NotShuffled] = []
    claimed: set[tuple[str, ...]] = set()
    covered: set[str] = set()  # DepthToSpace outputs already in a site or a report
    for node in editor.graph.node:
        if node.op_type not in CHAIN_OPS or node.domain not in ("", "ai.onnx"):
            continue
        if tuple(node.output) in claimed or not _is_head(editor, node):
            continue
        _add(found, claimed, covered, _follow(editor, node))
    # a DepthToSpace inside a run that could not be followed up to it: on its own
    for node in editor.graph.node:
        if node.op_type == "DepthToSpace" and node.output[0] not in covered:
            _add(found, claimed, covered, _follow(editor, node))
    return found


def _add(found: list, claimed: set, covered: set,
         site: ShuffleSite | NotShuffled | None) -> None:
    if site is None:
        return
    found.append(site)
    if isinstance(site, ShuffleSite):
        claimed.update(tuple(n.output) for n in site.nodes)
        covered.update(n.output[0] for n in site.nodes if n.op_type == "DepthToSpace")
    else:
        covered.update(site.d2s)


def _is_head(editor: GraphEditor, node: onnx.NodeProto) -> bool:
    """Does a run start at ``node`` (its input does not continue a run of single use)?"""
    prev = editor.producer.get(node.input[0])
    return (prev is None or prev.op_type not in CHAIN_OPS
            or not editor.single_use(node.input[0]))


def _follow(editor: GraphEditor, head: onnx.NodeProto) -> ShuffleSite | NotShuffled | None:
    values = editor.values
    start = head.input[0]
    nodes: list[onnx.NodeProto] = []
    best: ShuffleSite | None = None
    reason, interleaves = "", False
    node = head
    failed: onnx.NodeProto | None = None
    try:
        dims = _start_dims(editor, start)
        if dims is None:
            raise NotAShuffle("its input's shape is unknown")
        layout = Layout(dims)
        while True:
            _apply(editor, layout, node)
            nodes.append(node)
            values.set_dims(node.output[0], layout.dims())
            d2s = any(n.op_type == "DepthToSpace" for n in nodes)
            try:
                best = ShuffleSite(start, tuple(nodes), layout.shuffle_form(allow_identity=d2s))
            except NotAShuffle as why:
                reason = str(why)
                interleaves = interleaves or layout.moves_channels_into_space()
            out = node.output[0]
            if not editor.single_use(out):
                break
            node = editor.data_consumers(out)[0]
            if node.op_type not in CHAIN_OPS or node.input[0] != out:
                break
    except NotAShuffle as why:
        reason, failed = str(why), node
        if not nodes:  # no layout to follow: does the run look like an exporter's shuffle?
            interleaves = _shuffle_signature(editor, head)
    if best is not None:
        return best
    d2s = [n for n in (*nodes, failed) if n is not None and n.op_type == "DepthToSpace"]
    if not d2s and not interleaves:
        return None  # a reshape that keeps channels and space apart (attention, flattening)
    label = node_label(d2s[0]) if d2s else f"{node_label(nodes[0])} … {node_label(nodes[-1])}"
    return NotShuffled(start, label, f"not a pixel shuffle of an (N, C, H, W) tensor: {reason}",
                       tuple(n.output[0] for n in d2s))


# The 6-D transposes of the TorchScript exporter's pixel shuffle (CRD) and of DCR.
_SHUFFLE_PERMS = ([0, 1, 4, 2, 5, 3], [0, 3, 4, 1, 5, 2])


def _shuffle_signature(editor: GraphEditor, head: onnx.NodeProto) -> bool:
    """Does the run from ``head`` contain a pixel shuffle's 6-D Transpose? (Used to report a
    run whose input shape is unknown, which therefore cannot be followed.)"""
    node = head
    for _ in range(8):
        if node.op_type == "Transpose" and attributes(node).get("perm") in _SHUFFLE_PERMS:
            return True
        out = node.output[0]
        if not editor.single_use(out):
            return False
        node = editor.data_consumers(out)[0]
        if node.op_type not in CHAIN_OPS:
            return False
    return False


def _start_dims(editor: GraphEditor, start: str) -> tuple | None:
    """``start``'s dims; where shape inference lost them, ``(N, K, H, W)`` with ``K`` the
    output channels of the conv that feeds it through value-by-value ops."""
    dims = editor.values.dims(start)
    if dims is not None and len(dims) == 4 and as_int(dims[1]) is not None:
        return dims
    cur, node = start, editor.producer.get(start)
    while node is not None and node.op_type != "Conv":
        data = [i for i in node.input if i and editor.constant(i) is None]
        if node.op_type not in UNARY | BINARY | {"Slice", "Pad"} or len(data) != 1:
            return dims
        cur = data[0]
        node = editor.producer.get(cur)
    weight = None if node is None else editor.constant(node.input[1])
    if weight is None or weight.ndim != 4:
        return dims
    return (dim_symbol(start, 0), weight.shape[0], dim_symbol(start, 2), dim_symbol(start, 3))


def _apply(editor: GraphEditor, layout: Layout, node: onnx.NodeProto) -> None:
    """Apply one data-movement node to ``layout``."""
    a = attributes(node)
    op = node.op_type
    if op == "Identity":
        return
    if op == "Transpose":
        layout.transpose(a.get("perm"))
    elif op == "DepthToSpace":
        layout.depth_to_space(int(a["blocksize"]), a.get("mode", "DCR"))
    elif op in ("Unsqueeze", "Squeeze"):
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            value = editor.values.constant(node.input[1])
            if value is None:
                raise NotAShuffle(f"{op} axes are computed at run time")
            axes = [int(v) for v in np.asarray(value).ravel()]
        if op == "Unsqueeze":
            layout.unsqueeze(list(axes or []))
        else:
            layout.squeeze(None if axes is None else list(axes))
    else:  # Reshape
        if len(node.input) < 2:
            raise NotAShuffle("Reshape-1 (shape as an attribute) is not supported")
        target = editor.values.symbolic(node.input[1])
        if target is None:
            raise NotAShuffle(f"{node_label(node)}'s target shape is not known for all sizes")
        layout.reshape(list(np.asarray(target).ravel()), bool(a.get("allowzero", 0)))
