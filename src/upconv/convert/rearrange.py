"""Pixel shuffles written as reshapes and permutes (einops ``Rearrange``, hand-written ones).

``einops.rearrange(x, "b (c h2 w2) h w -> b c (h h2) (w w2)", h2=r, w2=r)`` records as
``view → permute → clone → view``. A chain of such ops from an ``(N, C·r², H, W)`` tensor to
an ``(N, C, r·H, r·W)`` one is a pixel shuffle exactly when replaying it on an index tensor
gives the pixel shuffle of a channel permutation of that index tensor: the order PyTorch's
pixel shuffle uses (``c·r² + a·r + b``, "CRD") or any other, e.g. the depth-first order
``(a·r + b)·C + c`` ("DCR"). The permutation is then folded into the conv's output channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx

from . import aten_ops as ops
from .trace import shape_of

aten = torch.ops.aten
_RESHAPES = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
_MOVES = {aten.permute.default, aten.transpose.int}
_COPIES = {aten.clone.default, aten.contiguous.default, aten.alias.default}
REARRANGE_OPS = _RESHAPES | _MOVES | _COPIES


@dataclass(frozen=True)
class Rearrangement:
    """``nodes`` (in order) turn ``source`` into its pixel shuffle by ``scale`` after reading
    its channels in the order ``channels`` (``channels[k]`` feeds shuffle channel ``k``)."""

    source: fx.Node
    nodes: tuple[fx.Node, ...]
    scale: int
    channels: tuple[int, ...]


def _replay(node: fx.Node, t: torch.Tensor) -> torch.Tensor:
    if node.target in _RESHAPES:
        return t.reshape(node.args[1])
    if node.target is aten.permute.default:
        return t.permute(node.args[1])
    if node.target is aten.transpose.int:
        return t.transpose(node.args[1], node.args[2])
    return t


def as_pixel_shuffle(end: fx.Node) -> Rearrangement | None:
    """The pixel shuffle the reshape ``end`` completes, if the chain ending there is one."""
    if not ops.is_op(end) or end.target not in _RESHAPES:
        return None
    if any(ops.is_op(u) and u.target in REARRANGE_OPS for u in end.users):
        return None  # not the end of the chain
    chain = [end]
    while True:
        src = ops.first_input(chain[0])
        if not ops.is_op(src) or src.target not in REARRANGE_OPS or len(src.users) != 1:
            break
        chain.insert(0, src)
    if not any(n.target in _MOVES for n in chain):
        return None
    source = ops.first_input(chain[0])
    shape_in, shape_out = shape_of(source), shape_of(end)
    if shape_in is None or shape_out is None or len(shape_in) != 4 or len(shape_out) != 4:
        return None
    (n, cin, h, w), (n2, c, oh, ow) = shape_in, shape_out
    if n != n2 or h == 0 or w == 0 or oh % h or ow % w or oh // h != ow // w:
        return None
    r = oh // h
    if r < 2 or cin != c * r * r:
        return None
    index = torch.arange(n * cin * h * w).reshape(shape_in)
    for node in chain:
        index = _replay(node, index)
    if tuple(index.shape) != tuple(shape_out):
        return None
    # undo the shuffle: each channel must then be one whole source channel, pixels in place
    u = F.pixel_unshuffle(index, r)
    channel = (u // (h * w)) % cin
    expected = torch.arange(n * cin * h * w).reshape(shape_in) % (h * w)
    batch = u // (cin * h * w)
    if not torch.equal(u % (h * w), expected) or \
            not torch.equal(batch, torch.arange(n).view(n, 1, 1, 1).expand_as(batch)):
        return None
    order = channel[0, :, 0, 0]
    if not torch.equal(channel, order.view(1, cin, 1, 1).expand_as(channel)):
        return None
    return Rearrangement(source, tuple(chain), r, tuple(int(k) for k in order))


__all__ = ["REARRANGE_OPS", "Rearrangement", "as_pixel_shuffle"]
