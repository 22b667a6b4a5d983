"""ONNX rewrite: ``Conv → [value-by-value ops, crops] → pixel shuffle`` ⇒ ``ConvTranspose``.

The pixel shuffle is any run :func:`~upconv.convert.onnx_shuffle.find_shuffles` proves to be
one: ``DepthToSpace`` (``CRD`` or ``DCR``) or the ``Reshape → Transpose → Reshape`` of legacy
exports. Its channel permutation ``π`` is applied to the conv's output channels first, so
one weight shuffle serves every order. Between the conv and the shuffle:

* scalar / per-channel ``Mul``, ``Div``, ``Add``, ``Sub`` before anything nonlinear are folded
  into the conv's weights and bias;
* other value-by-value ops (``Relu``, ``LeakyRelu``, ``PRelu``, ``Clip``, SiLU's ``x·σ(x)``,
  …, and the scale / shift ops after them; see :mod:`~upconv.convert.onnx_region`) move after
  the ``ConvTranspose``: a pixel shuffle only moves values, so they commute when their
  constants agree on the ``rh·rw`` conv channels of every output channel (a per-channel
  ``PRelu`` slope is then indexed by output channel);
* spatial crops (``Slice``, negative ``Pad``) become extra crops of the ``ConvTranspose``
  (``r`` output pixels per input pixel); a conv whose padding does not keep the size (a
  valid conv) is a same conv followed by a crop, so it converts the same way.

A grouped conv converts into a grouped ``ConvTranspose`` when every output channel's
``rh·rw`` conv channels come from group ``⌊c·g / C⌋`` (``g`` divides ``C``); the periodic bias
is added after (see :func:`~upconv.convert.onnx_graph.conv_transpose_nodes`). A shuffle of a
conv's output plus another tensor splits (:mod:`~upconv.convert.onnx_subpixel_sum`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import torch

from .conv_params import Unsupported
from .deconv_factory import subpixel_deconv
from .onnx_crop import same_padding_and_crop
from .onnx_elementwise import Elementwise
from .onnx_graph import GraphEditor, conv_transpose_nodes, node_label
from .onnx_region import Region, emit, region_from, resolve, source_conv
from .onnx_shuffle import NotShuffled, ShuffleSite, find_shuffles
from .onnx_subpixel_sum import SumSplit, emit_sum, split_sum
from .report import ConversionReport, ConvertedSite

KIND = "sub-pixel"
ALGORITHM = "ConvTranspose"


def _plain_if_uniform(bias: np.ndarray) -> np.ndarray:
    """A periodic ``(C, r, r)`` bias as ``(C,)`` when every period holds one value."""
    flat = bias.reshape(bias.shape[0], -1)
    return flat[:, 0].copy() if np.all(flat == flat[:, :1]) else bias


def rewrite_subpixel(editor: GraphEditor, report: ConversionReport) -> None:
    """Queue a rewrite of every pixel shuffle fed by a convertible ``Conv``; report the rest."""
    for site in find_shuffles(editor):
        if isinstance(site, NotShuffled):
            report.skip(site.label, KIND, _first_reason(editor, site))
            continue
        where = site.label
        split = None
        try:
            try:
                conv = source_conv(editor, site.start)
            except Unsupported as why:
                split = split_sum(editor, site, why)
                conv = split.conv
            where = f"{node_label(conv)} → {where}"
            if editor.is_removed(conv):
                raise Unsupported("the Conv is already part of another converted site")
            region = region_from(editor, conv.output[0], site.form.perm.size,
                                 _reads_start(site) if split is None else split.reads_addend,
                                 "the conv output has other consumers ({label}: {why})")
            path = [node_label(e.node) for e in region.ops]
            if split is not None:
                path.append(f"{node_label(split.add)}(+ {split.other})")
            where = " → ".join([node_label(conv), *path, site.label])
            replaced = [conv, *(e.node for e in region.ops),
                        *([split.add] if split else []), *site.nodes]
            if not editor.shape_uses_confined({o for n in replaced for o in n.output}
                                              - {site.end}, replaced):
                raise Unsupported("the shape of an intermediate tensor is used elsewhere")
            plan = _plan(editor, conv, region, site)
        except Unsupported as why:
            report.skip(where, KIND, str(why))
            continue
        _queue(editor, conv, region, site, plan, where, report, split)


def _first_reason(editor: GraphEditor, site: NotShuffled) -> str:
    """Why a run is left alone: a shuffle of something that is no conv's output says so
    first (e.g. DySample's offsets), the shape problem only if a conv does feed it."""
    try:
        source_conv(editor, site.start)
    except Unsupported as why:
        return str(why)
    return site.reason


def _reads_start(site: ShuffleSite):
    """Is ``node`` the shuffle's first op, reading its start tensor?"""
    head = tuple(site.nodes[0].output)
    return lambda node, tensor: tuple(node.output) == head and tensor == site.start


@dataclasses.dataclass
class _Plan:
    weight: np.ndarray  # ConvTranspose weight (Cin, C / g, rh·Kh, rw·Kw)
    bias: np.ndarray | None  # (C,) or periodic (C, rh, rw)
    stride: tuple[int, int]
    crops: tuple[int, int, int, int]
    groups: int
    kernel_size: tuple[int, int]
    moved: list[tuple[Elementwise, np.ndarray | None]]
    aliases: dict[str, str]  # outputs of folded ops, crops, identities → their inputs
    notes: list[str]


def _plan(editor: GraphEditor, conv: onnx.NodeProto, region: Region,
          site: ShuffleSite) -> _Plan:
    params = editor.conv_params(conv)
    form = site.form
    rh, rw = form.scale
    perm = form.perm.reshape(-1)
    weight = params.weight.numpy().astype(np.float64)
    bias = None if params.bias is None else params.bias.numpy().astype(np.float64)
    notes: list[str] = []

    # 1. fold the scale / shift ops on the conv's own single path, before anything nonlinear;
    #    they, crops and identities drop out (their outputs alias the deconvolution's)
    folding, moved, aliases = True, [], {}
    cur = conv.output[0]
    crop = np.zeros(4, np.int64)
    for e in region.ops:
        out = e.node.output[0]
        on_path = folding and e.data == cur and list(e.node.input).count(cur) == 1 \
            and editor.single_use(cur)
        if e.kind in ("crop", "identity"):
            if e.kind == "crop" and not region.is_chain:
                raise Unsupported("a crop inside a branching run of value-by-value ops")
            crop += e.crop
            aliases[out] = e.data
            cur = out if on_path else cur
            continue
        if on_path and e.kind in ("scale", "shift"):
            weight, bias = e.fold(weight, bias)
            notes.append(f"{e.node.op_type} folded")
            aliases[out] = e.data
            cur = out
            continue
        folding = False
        moved.append(e)

    # 2. the moved ops' constants, indexed by output channel
    channels = perm.size // (rh * rw)
    mapped = [(e, _through_shuffle(e, perm, channels, rh * rw)) for e in moved]
    notes += [f"{e.node.op_type} moved after" for e in moved]

    # 3. conv channels in CRD order, checked against the groups
    groups = params.groups
    weight = weight[perm]
    bias = None if bias is None else bias[perm]
    if groups > 1:
        _check_groups(perm, groups, channels, rh * rw)
        notes.append(f"groups={groups}")

    # 4. one weight shuffle per group; crops from the padding and the crop ops
    pad, extra = same_padding_and_crop(params, crop)
    if crop.any():
        notes.append(f"crop {tuple(int(c) for c in crop)}")
    dtype = params.weight.numpy().dtype
    per_group = channels // groups * rh * rw
    deconvs = []
    for g in range(groups):
        part = slice(g * per_group, (g + 1) * per_group)
        p = dataclasses.replace(
            params, groups=1, padding=pad,
            weight=torch.from_numpy(weight[part].astype(dtype)),
            bias=None if bias is None else torch.from_numpy(bias[part].astype(dtype)))
        deconvs.append(subpixel_deconv(p, (rh, rw), "auto"))
    top, bottom, left, right = deconvs[0].padding
    crops = (top + rh * extra[0], bottom + rh * extra[1],
             left + rw * extra[2], right + rw * extra[3])
    w = np.concatenate([d.weight.detach().numpy() for d in deconvs])
    b = None if bias is None else _plain_if_uniform(
        np.concatenate([d.bias.detach().numpy() for d in deconvs]))
    return _Plan(w, b, (rh, rw), crops, groups, params.kernel_size, mapped, aliases, notes)


def _through_shuffle(e: Elementwise, perm: np.ndarray, channels: int,
                     block: int) -> np.ndarray | None:
    """``e``'s per-channel constant indexed by output channel ``(C,)`` (None if scalar)."""
    if e.param is None or e.param.ndim == 0:
        return None
    per_out = e.param[perm].reshape(channels, block)
    if not np.all(per_out == per_out[:, :1]):
        raise Unsupported(f"{e.node.op_type}'s per-channel constants differ among the {block} "
                          "conv channels of an output channel, so it does not commute with the "
                          "shuffle")
    return per_out[:, 0].copy()


def _check_groups(perm: np.ndarray, groups: int, channels: int, block: int) -> None:
    """Each output channel ``c`` must read conv channels of group ``⌊c·g / C⌋`` only."""
    if channels % groups:
        raise Unsupported(f"groups={groups} does not divide the {channels} output channels")
    per_conv_group = perm.size // groups
    conv_group = perm.reshape(channels, block) // per_conv_group
    wanted = (np.arange(channels) * groups // channels)[:, None]
    if not np.all(conv_group == wanted):
        raise Unsupported(f"groups={groups}: an output channel mixes conv channels of "
                          "different groups (the shuffle order does not keep groups apart)")


def _queue(editor: GraphEditor, conv, region: Region, site: ShuffleSite, plan: _Plan,
           where: str, report: ConversionReport, split: SumSplit | None) -> None:
    label = conv.name or conv.output[0]
    sink = resolve(plan.aliases, region.sink)
    moved = plan.moved if sink != conv.output[0] else []  # (ops off the path to the sink)
    y = editor.fresh(f"{label}.conv_part") if split else site.end
    out = editor.fresh(f"{label}.deconv_y") if moved else y
    nodes = conv_transpose_nodes(editor, conv.input[0], out, plan.weight, plan.bias,
                                 plan.stride, plan.crops, label, plan.groups)
    if moved:
        nodes += emit(editor, moved, {conv.output[0]: out}, plan.aliases, sink, y, label)
    notes = list(plan.notes)
    if split:
        nodes += emit_sum(editor, split, site, y, label)
        notes.append(f"the other addend of {node_label(split.add)} shuffled on its own")
    editor.replace([conv, *(e.node for e in region.ops), *([split.add] if split else []),
                    *site.nodes], nodes)
    kind = "none" if plan.bias is None else ("periodic" if plan.bias.ndim == 3 else "per-channel")
    detail = ", ".join([site.form.order, *notes])
    report.add_converted(ConvertedSite(
        nodes[0].name, KIND, site.form.scale, plan.kernel_size,
        tuple(int(k) for k in plan.weight.shape[2:]), ALGORITHM, kind, f"{where} ({detail})"))
