"""Every upsampling op of a recorded forward, and whether it is a convertible site.

A **sub-pixel site** is ``conv → [ops] → pixel_shuffle`` and a **resize site** is
``nearest resize → [ops] → conv``, where the ops in between are ones a pixel shuffle or a
nearest resize commutes with: elementwise ops (activations, clamps, scalar arithmetic),
PReLU (per-channel slopes too, see below), copies, and — before a shuffle only — crops of H
and W by fixed amounts. Each intermediate result must have no other consumer.

A per-channel PReLU before a shuffle applies slope ``w[c·r² + k]`` to conv channel
``c·r² + k``, which becomes output channel ``c``: it moves past the shuffle only when the
``r²`` slopes of every ``c`` are equal. Before a nearest resize any PReLU commutes.

:func:`find_sites` returns one entry per upsampling op (pixel shuffle, resize, transposed
convolution): a :class:`Site`, or a :class:`Skip` saying why it is not one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx

from ..shapes import IntPair, Pad4
from . import aten_ops as ops
from . import between as pair_ops
from .rearrange import REARRANGE_OPS, Rearrangement, as_pixel_shuffle
from .trace import Trace, innermost_call, shape_of

SUBPIXEL, RESIZE, DECONV = "sub-pixel", "resize", "deconvolution"
ALREADY_DECONV = "already a deconvolution (transposed convolution): left as is"


@dataclass(frozen=True)
class Site:
    """A convertible chain. ``between`` lists the ops between conv and shuffle (or resize and
    conv) in data order; ``pad`` is a zero-padding op feeding the conv (``padding='same'``
    with an even kernel); ``padding`` the conv's zero padding ``(top, bottom, left, right)``
    with ``pad`` included; ``crop`` what the ops between crop from the conv's output before
    the shuffle; ``prelus`` the per-channel PReLU nodes among ``between`` that need their
    slopes mapped through the shuffle. ``mean_of`` > 1 when the conv's output channels are
    averaged in that many groups before the shuffle (MoSR's geo-ensemble: ``view(N, G, C, H, W)
    .mean(1)``, ``mean_nodes``): a linear map folded into the conv's weights. A shuffle written
    as reshapes and permutes (:mod:`upconv.convert.rearrange`) lists them in ``up_nodes``, and
    ``channels`` is the conv output channel each shuffle channel reads."""

    kind: str
    up: fx.Node
    conv: fx.Node
    pad: fx.Node | None
    between: tuple[fx.Node, ...]
    scale: IntPair
    padding: Pad4
    crop: Pad4 = (0, 0, 0, 0)
    prelus: tuple[fx.Node, ...] = ()
    mean_of: int = 1
    mean_nodes: tuple[fx.Node, ...] = ()
    up_nodes: tuple[fx.Node, ...] = ()
    channels: tuple[int, ...] | None = None

    @property
    def ups(self) -> tuple[fx.Node, ...]:
        """The op(s) of the shuffle / resize: one, or a reshape-permute chain."""
        return self.up_nodes or (self.up,)

    @property
    def nodes(self) -> tuple[fx.Node, ...]:
        """Every op of the chain, in data order."""
        conv = (self.pad, self.conv) if self.pad is not None else (self.conv,)
        if self.kind == SUBPIXEL:
            return (*conv, *self.mean_nodes, *self.between, *self.ups)
        return (self.up, *self.between, *conv)

    @property
    def entry(self) -> fx.Node:
        """The tensor the chain reads."""
        return ops.first_input(self.nodes[0])

    @property
    def exit(self) -> fx.Node:
        return self.nodes[-1]


@dataclass(frozen=True)
class Skip:
    """An upsampling op left alone. ``limitation`` is True when it is a sub-pixel / nearest
    resize convolution in principle that upconv cannot rewrite, False when the op is no such
    pattern (bilinear resize, no convolution, already a deconvolution, ...)."""

    node: fx.Node
    kind: str
    label: str
    reason: str
    limitation: bool = False


class NotASite(Exception):
    def __init__(self, reason: str, limitation: bool = False) -> None:
        super().__init__(reason)
        self.limitation = limitation


def label(node: fx.Node) -> str:
    """A module path when ``node`` is the whole work of a conv / shuffle / resize module call
    (torch.nn's or einops'), else ``F.interpolate(nearest) in <module>``."""
    call = innermost_call(node)
    if call is not None and call.path and \
            type(call.module).__module__.startswith(("torch.nn", "einops")):
        return call.path
    if node.target in REARRANGE_OPS:
        return f"reshape-permute shuffle in {ops.where(node).partition(' in ')[2]}"
    return ops.where(node)


# --- pieces -----------------------------------------------------------------------------


def _conv_padding(conv: fx.Node, pad: fx.Node | None) -> Pad4:
    ph, pw = ops.conv_args(conv)["padding"]
    top, bottom, left, right = ph, ph, pw, pw
    if pad is not None:
        left_, right_, top_, bottom_ = [*pad.args[1], 0, 0, 0, 0][:4]
        top, bottom, left, right = top + top_, bottom + bottom_, left + left_, right + right_
    return (top, bottom, left, right)


def _zero_pad(node: object) -> bool:
    """A ``constant_pad_nd`` adding zeros on H / W only (what ``padding='same'`` emits)."""
    if not ops.is_op(node) or node.target is not torch.ops.aten.constant_pad_nd.default:
        return False
    pads = list(node.args[1])
    value = node.args[2] if len(node.args) > 2 else 0.0
    return value == 0 and all(p >= 0 for p in pads) and not any(pads[4:])


def _check_conv(conv: fx.Node) -> None:
    """Raise :class:`NotASite` if the conv is not stride 1, dilation 1, stored weights."""
    a = ops.conv_args(conv)
    if tuple(a["stride"]) != (1, 1):
        raise NotASite(f"the convolution has stride {tuple(a['stride'])} (only stride 1 "
                       "keeps the size)")
    if tuple(a["dilation"]) != (1, 1):
        raise NotASite(f"the convolution has dilation {tuple(a['dilation'])} (only "
                       "dilation 1 converts)", limitation=True)
    if ops.param_path(a["weight"]) is None:
        raise NotASite("the convolution's weight is computed at run time, not a stored "
                       "parameter")
    if a["bias"] is not None and ops.param_path(a["bias"]) is None:
        raise NotASite("the convolution's bias is computed at run time, not a stored parameter")


def _sum_operands_reason(node: fx.Node) -> str | None:
    """PLKSR's ``shuffle(conv(x) + repeat(x))``: name the conv the sum hides."""
    if node.target not in (torch.ops.aten.add.Tensor, torch.ops.aten.sub.Tensor):
        return None
    convs = [a for a in ops.tensor_inputs(node) if ops.is_conv(a)]
    if not convs:
        return None
    others = [ops.readable(a) for a in ops.tensor_inputs(node) if a not in convs]
    return (f"its input is {ops.readable(node)}(conv {label(convs[0])}, "
            f"{', '.join(others) or 'a tensor'}): a shuffle distributes over the sum, but the "
            "other operand would need a shuffle of its own")


# --- sub-pixel ----------------------------------------------------------------------------


def _conv_upstream(node: fx.Node | None, r2: int) -> fx.Node | None:
    """The conv ``node`` comes from through ops that may sit between, else None."""
    while node is not None and ops.is_op(node) and not ops.is_conv(node):
        if len(node.users) != 1 or \
                pair_ops.between_reason(node, pair_ops.operand(node), SUBPIXEL, r2):
            return None
        node = pair_ops.operand(node)
    return node if ops.is_conv(node) else None


def _subpixel(shuffle: fx.Node, r: int, shape: Rearrangement | None = None) -> Site:
    between: list[fx.Node] = []
    prelus: list[fx.Node] = []
    crop = [0, 0, 0, 0]
    node = ops.first_input(shuffle) if shape is None else shape.source
    consumer = shuffle if shape is None else shape.nodes[0]
    mean_of, mean_nodes = 1, ()
    while not ops.is_conv(node):
        grouped = pair_ops.group_mean(node) if len(node.users) == 1 else None
        if grouped is not None:
            mean_of, node, mean_nodes = grouped
            consumer = mean_nodes[0]
            continue
        if node is None or not ops.is_op(node):
            raise NotASite(f"its input is {ops.readable(node) if node is not None else '?'} "
                           "(not a convolution)")
        if len(node.users) != 1:
            others = ", ".join(ops.readable(u) for u in node.users if u is not consumer)
            raise NotASite(f"{ops.where(node)}, between its producer and the shuffle, is also "
                           f"used by {others}")
        operand = pair_ops.operand(node)
        why = pair_ops.between_reason(node, operand, SUBPIXEL, r * r)
        if why is not None:
            summed = _sum_operands_reason(node) if not between else None
            if summed is not None:
                raise NotASite(summed, limitation=True)
            conv = _conv_upstream(operand, r * r)
            if conv is not None:
                raise NotASite(f"{ops.where(node)} between the conv {label(conv)} and the "
                               f"shuffle: {why}", limitation=True)
            if not between:
                raise NotASite(f"its input is {ops.where(node)} (not a convolution)")
            raise NotASite(f"{ops.where(node)} between its producer and the shuffle: {why}")
        amounts = ops.crop_amounts(node)
        if isinstance(amounts, tuple):
            crop = [a + b for a, b in zip(crop, amounts, strict=True)]
        if ops.prelu_weight(node) is not None and ops.numel(shape_of(ops.prelu_weight(node))) > 1:
            prelus.insert(0, node)
        between.insert(0, node)
        consumer, node = node, operand
    conv = node
    if len(conv.users) != 1:
        raise NotASite("the conv output is used elsewhere too (not only by the shuffle)")
    pad = ops.first_input(conv)
    pad = pad if _zero_pad(pad) and len(pad.users) == 1 else None
    _check_conv(conv)
    cout = shape_of(conv)[1] // mean_of
    if cout % (r * r):
        raise NotASite(f"{cout} conv output channels are not divisible by {r}·{r}")
    channels = None
    if shape is not None and shape.channels != tuple(range(len(shape.channels))):
        if mean_of > 1 or prelus:
            raise NotASite("a reshape-permute shuffle in another channel order after a group "
                           "mean or a per-channel PReLU", limitation=True)
        channels = shape.channels
    return Site(SUBPIXEL, shuffle, conv, pad, tuple(between), (r, r), _conv_padding(conv, pad),
                tuple(crop), tuple(prelus), mean_of, mean_nodes,
                shape.nodes if shape is not None else (), channels)


# --- resize -------------------------------------------------------------------------------


def _resize_scale(resize: fx.Node) -> IntPair:
    shape_in, shape_out = shape_of(ops.first_input(resize)), shape_of(resize)
    if shape_in is None or shape_out is None or len(shape_in) != 4:
        raise NotASite("not a 2-D resize of an (N, C, H, W) tensor")
    (h, w), (oh, ow) = shape_in[2:], shape_out[2:]
    if oh % h or ow % w:
        raise NotASite(f"non-integer scale: {h}x{w} → {oh}x{ow}")
    scale = (oh // h, ow // w)
    extra = resize.args[2:]
    if extra and isinstance(extra[0], (list, tuple)):  # the .vec overload: scale_factors
        given = [float(v) for v in extra[0]]
    else:  # scales_h, scales_w (None when a size was given)
        given = [v for v in extra if isinstance(v, float)]
    if given and tuple(given[:2]) != (float(scale[0]), float(scale[1])):
        raise NotASite(f"scale factors {tuple(given)} do not match the shapes "
                       f"{h}x{w} → {oh}x{ow}")
    return scale


def _resize(resize: fx.Node, mode: str) -> Site:
    if mode not in ops.NEAREST_MODES:
        raise NotASite(f"{mode} resize (only nearest reduces to a deconvolution)")
    scale = _resize_scale(resize)
    between: list[fx.Node] = []
    node = resize
    while True:
        users = list(node.users)
        if len(users) != 1:
            names = ", ".join(ops.readable(u) for u in users) or "nothing"
            raise NotASite(f"{'its output' if node is resize else ops.where(node)} has "
                           f"{len(users)} consumers ({names}), not one convolution")
        user = users[0]
        pad = None
        if _zero_pad(user) and len(user.users) == 1 and ops.is_conv(next(iter(user.users))):
            pad, user = user, next(iter(user.users))
        if ops.is_conv(user):
            if ops.first_input(user) is not (pad or node):
                raise NotASite("the resize feeds a convolution's weights, not its input")
            break
        why = pair_ops.between_reason(user, node, RESIZE, 1)
        if why is not None:
            if node is resize:
                raise NotASite(f"its consumer is {ops.where(user)} (not a convolution)")
            raise NotASite(f"{ops.where(user)} between the resize and its consumer: {why}")
        between.append(user)
        node = user
    conv = user
    _check_conv(conv)
    return Site(RESIZE, resize, conv, pad, tuple(between), scale, _conv_padding(conv, pad))


# --- all of them --------------------------------------------------------------------------


def _skip(node: fx.Node, kind: str, why: NotASite | str, where: str | None = None) -> Skip:
    if isinstance(why, str):
        return Skip(node, kind, where or label(node), why)
    return Skip(node, kind, where or label(node), str(why), why.limitation)


def site_label(site: Site) -> str:
    """``conv → shuffle`` or ``resize → conv``, by module path or functional call."""
    if site.kind == SUBPIXEL:
        return f"{label(site.conv)} → {label(site.up)}"
    return f"{label(site.up)} → {label(site.conv)}"


def find_sites(trace: Trace) -> list[Site | Skip]:
    """One :class:`Site` or :class:`Skip` per upsampling op of ``trace``, in execution order.

    Sub-pixel sites are found first: a conv they take (``resize → conv → shuffle``) is not
    also a resize site.
    """
    found: dict[fx.Node, Site | Skip] = {}
    for node in trace.op_nodes():
        r = ops.shuffle_factor(node)
        if r == 1:
            found[node] = _skip(node, SUBPIXEL, "a pixel shuffle by 1 is the identity")
        elif r is not None:
            try:
                found[node] = _subpixel(node, r)
            except NotASite as why:
                found[node] = _skip(node, SUBPIXEL, why)
        elif ops.is_transposed_conv(node):
            found[node] = _skip(node, DECONV, ALREADY_DECONV)
        elif (shape := as_pixel_shuffle(node)) is not None:
            try:
                found[node] = _subpixel(node, shape.scale, shape)
            except NotASite as why:
                found[node] = _skip(node, SUBPIXEL, why)
    taken = {s.conv for s in found.values() if isinstance(s, Site)}
    for node in trace.op_nodes():
        mode = ops.resize_mode(node)
        if mode is None:
            continue
        if ops.is_identity(node):
            found[node] = _skip(node, RESIZE, "a resize to the same size is the identity")
            continue
        try:
            site = _resize(node, mode)
        except NotASite as why:
            found[node] = _skip(node, RESIZE, why)
            continue
        if site.conv in taken:
            found[node] = _skip(node, RESIZE, NotASite(
                f"its convolution {label(site.conv)} is converted with the pixel shuffle "
                "that follows it (one rewrite per convolution)", limitation=True))
        else:
            found[node] = site
            taken.add(site.conv)
    order = {n: i for i, n in enumerate(trace.nodes)}
    return [found[n] for n in sorted(found, key=order.__getitem__)]
