"""Turn the sites of a recorded forward into module swaps on a copy of the user's model.

The model keeps its class, its methods and its Python ``forward``; only modules change. A
site is rewritten by the first rule that applies:

1. **module swap** — the conv is an ``nn.Conv2d`` call and the shuffle an ``nn.PixelShuffle``
   (the resize an ``nn.Upsample``) call: the conv becomes a :class:`~upconv.Deconv2d`, the
   shuffle / resize an ``nn.Identity``. Ops between them stay where they are in ``forward``
   and now run on the deconvolution's output (a shuffle commutes with them), or on its input
   (a nearest resize does); a per-channel ``nn.PReLU`` before a shuffle becomes a PReLU over
   the shuffled channels; a crop before a shuffle stays, the deconvolution crops what is left.
2. **enclosing module** — a module call that computes exactly the chain (input → conv →
   shuffle → output, e.g. a small ``Upsample`` block calling ``F.interpolate`` and a conv) is
   replaced as a whole by the deconvolution.
3. **strided input** — a nearest resize called in ``forward`` feeding an ``nn.Conv2d``: the
   conv becomes a :class:`~upconv.convert.strided.StridedInputDeconv2d` that reads every
   ``r``-th pixel of the resized map (the resize still runs; the big convolution does not).
4. **fx rewrite of one forward** — ``F.pixel_shuffle`` / ``F.conv2d`` called in a ``forward``
   that also does other work: if torch.fx can trace that module's own ``forward``
   (:mod:`upconv.convert.fx_scope`), the module becomes a ``GraphModule`` without the
   shuffle / resize and with the deconvolution.

Anything else is left alone with its reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from ..layers import Deconv2d, ResizeConv2d, SubPixelConv2d
from . import aten_ops as ops
from . import between as pair_ops
from .conv_params import ConvParams, Unsupported
from .deconv_factory import bias_kind, build_resize_deconv, build_subpixel_deconv
from .fx_scope import FxEdit, rewrite_scope
from .report import ConvertedSite, SkippedSite
from .sites import RESIZE, SUBPIXEL, Site, Skip, label, site_label
from .strided import StridedInputDeconv2d
from .trace import ModuleCall, Trace, calls_of_node, innermost_call

#: upconv's own layers: recorded as one node each, converted with ``.to_deconv()``
UPCONV_LAYERS = (SubPixelConv2d, ResizeConv2d, Deconv2d)
NATIVE_DECONV_REASON = "already a deconvolution: left as is"


@dataclass(frozen=True)
class Swap:
    """Put ``module`` at every path in ``paths`` (all names of the module it replaces)."""

    paths: tuple[str, ...]
    module: nn.Module


@dataclass
class Plan:
    """Module swaps, report entries, and the fx rewrites (rule 4) by scope path, each with
    every path the scope module is registered at."""

    swaps: list[Swap]
    converted: list[ConvertedSite]
    skipped: list[SkippedSite]
    fx: dict[str, tuple[tuple[str, ...], list[FxEdit]]] = field(default_factory=dict)


class _Rejected(Exception):
    pass


def _paths(trace: Trace, call: ModuleCall) -> tuple[str, ...]:
    return tuple(trace.paths.get(id(call.module), [call.path]))


def _conv_params(site: Site) -> ConvParams:
    """The site's conv; a group mean after it (``mean_of`` > 1) folded into its weights."""
    a = ops.conv_args(site.conv)
    weight = a["weight"].meta["tensor"]
    bias = a["bias"].meta["tensor"] if a["bias"] is not None else None
    if site.mean_of > 1:
        g = site.mean_of
        weight = weight.reshape(g, -1, *weight.shape[1:]).mean(0)
        bias = bias.reshape(g, -1).mean(0) if bias is not None else None
    if site.channels is not None:  # a reshape-permute shuffle reading channels in its order
        order = list(site.channels)
        weight = weight[order]
        bias = bias[order] if bias is not None else None
    return ConvParams(weight, bias, 1, site.padding, 1, int(a["groups"]))


def _only_call(trace: Trace, call: ModuleCall, nodes: set[fx.Node]) -> bool:
    """``call`` is its module's only call and computes exactly ``nodes`` (views of the
    module's own parameters aside)."""
    if len(trace.calls_of(call.module)) != 1:
        return False
    rest = set(trace.ops_in(call)) - nodes
    return all(ops.stored_tensor(n) is not None for n in rest)


def _conv_module(trace: Trace, site: Site) -> ModuleCall:
    """The ``nn.Conv2d`` call that is exactly the site's conv, else :class:`_Rejected`."""
    call = innermost_call(site.conv)
    if call is None or not isinstance(call.module, nn.Conv2d):
        raise _Rejected(f"the convolution is a functional call ({ops.where(site.conv)}), not "
                        "an nn.Conv2d module upconv could swap")
    if len(trace.calls_of(call.module)) != 1:
        raise _Rejected(f"the conv module {call.path} is called at more than one place")
    nodes = {site.conv} | ({site.pad} if site.pad is not None else set())
    if not _only_call(trace, call, nodes) or \
            ops.param_path(ops.conv_args(site.conv)["weight"]) != f"{call.path}.weight":
        raise _Rejected(f"the conv module {call.path} computes more than its convolution")
    return call


def _up_module(trace: Trace, site: Site, swappable_ups: set[fx.Node]) -> ModuleCall:
    """The module call that is exactly the site's shuffle / resize (``nn.PixelShuffle``,
    ``nn.Upsample``, einops' ``Rearrange``, ...), every call of which belongs to a swappable
    site; else :class:`_Rejected`."""
    call = innermost_call(site.up)
    what = "pixel shuffle" if site.kind == SUBPIXEL else "resize"
    if call is None or call.module is trace.calls[0].module or \
            set(trace.ops_in(call)) != set(site.ups):
        raise _Rejected(f"{label(site.up)} is a functional {what} in a forward that does "
                        "other work too, not a module upconv could replace by Identity")
    others = [c for c in trace.calls_of(call.module)
              if not set(trace.ops_in(c)) <= swappable_ups]
    if others:
        raise _Rejected(f"the {type(call.module).__name__} module {call.path} is also called "
                        "where it does not follow a convertible conv")
    return call


def _folds(trace: Trace, site: Site) -> list[tuple[str, float, ModuleCall]]:
    """The scalar-affine modules (AWSRN's learned ``Scale``) next to the conv that fold into
    its weights: after the conv before a shuffle (× ÷ + −), before the conv after a resize
    (× ÷ only: an added constant would also shift the conv's zero padding)."""
    chain = list(site.between) if site.kind == SUBPIXEL else list(reversed(site.between))
    allowed = ("mul", "div", "add", "sub") if site.kind == SUBPIXEL else ("mul", "div")
    folds = []
    for node in chain:
        scalar = pair_ops.scalar_op(node)
        call = innermost_call(node)
        if scalar is None or scalar[0] not in allowed or call is None or \
                call.module is trace.calls[0].module or not _only_call(trace, call, {node}):
            break
        folds.append((*scalar, call))
    return folds


def _prelu_swaps(trace: Trace, site: Site) -> list[Swap]:
    """A PReLU over the shuffled channels for each per-channel ``nn.PReLU`` before a shuffle."""
    r2 = site.scale[0] * site.scale[1]
    swaps = []
    for node in site.prelus:
        call = innermost_call(node)
        if call is None or not isinstance(call.module, nn.PReLU) or \
                not _only_call(trace, call, {node}):
            raise _Rejected(f"per-channel {ops.where(node)} between the conv and the shuffle "
                            "is not an nn.PReLU module upconv could swap for one over the "
                            "shuffled channels")
        weight = call.module.weight.detach()
        mapped = nn.PReLU(weight.numel() // r2, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            mapped.weight.copy_(weight.reshape(-1, r2)[:, 0])
        swaps.append(Swap(_paths(trace, call), mapped))
    return swaps


def _common_call(site: Site) -> ModuleCall | None:
    """The innermost module call that every op of the site ran in."""
    common = None
    for level in zip(*(calls_of_node(n) for n in site.nodes), strict=False):
        if any(c is not level[0] for c in level):
            break
        common = level[0]
    return common


def _enclosing(trace: Trace, site: Site) -> ModuleCall | None:
    """The module call that computes exactly the site's chain, if there is one."""
    if site.between:
        return None
    common = _common_call(site)
    if common is None or not _only_call(trace, common, set(site.nodes)):
        return None
    if set(common.inputs) != {site.entry} or common.outputs != [site.exit]:
        return None
    return common


def _describe(site: Site, how: str) -> str:
    text = site_label(site)
    if site.mean_of > 1:
        text += f" (mean of {site.mean_of} channel groups, folded into the weights)"
    if site.channels is not None:
        text += " (shuffle channel order folded into the weights)"
    if site.between:
        text += " (through " + ", ".join(ops.readable(n) for n in site.between) + ")"
    return f"{text}; {how}" if how else text


def _report(site: Site, path: str, deconv: Deconv2d, algorithm: str, how: str) -> ConvertedSite:
    kernel = tuple(ops.conv_args(site.conv)["weight"].meta["shape"][2:])
    return ConvertedSite(path or "(the whole model)", site.kind, site.scale, kernel,
                         deconv.kernel_size, algorithm, bias_kind(deconv), _describe(site, how))


def _fx_edit(trace: Trace, site: Site, algorithm: str, conv_call: ModuleCall | None,
             plan: Plan) -> ConvertedSite:
    """Rule 4: queue an edit of the innermost module whose forward runs the whole chain."""
    if site.mean_of > 1:
        raise _Rejected("a channel-group mean before the shuffle in a forward that does "
                        "other work too")
    scope = _common_call(site)
    if scope is None or len(trace.calls_of(scope.module)) != 1:
        raise _Rejected("the functional ops run in a module called at more than one place")
    prefix = f"{scope.path}." if scope.path else ""
    weight = ops.param_path(ops.conv_args(site.conv)["weight"]) or ""
    if conv_call is not None:
        conv_module, conv_weight = conv_call.path[len(prefix):], None
    elif weight.startswith(prefix):
        conv_module, conv_weight = None, weight[len(prefix):]
    else:
        raise _Rejected("the convolution's weight belongs to another module")
    extra = {}
    for swap in _prelu_swaps(trace, site):
        extra[swap.paths[0][len(prefix):]] = swap.module
    params = _conv_params(site)
    if site.kind == SUBPIXEL:
        deconv = build_subpixel_deconv(params, site.scale, algorithm, site.crop, site.crop)
    else:
        deconv = build_resize_deconv(params, site.scale, algorithm)
    where = scope.path or type(scope.module).__name__
    report = _report(site, "", deconv, algorithm,
                     f"torch.fx rewrite of {where}.forward (now a GraphModule)")
    edit = FxEdit(site.kind, conv_module, conv_weight, len(site.between), deconv, report,
                  extra)
    plan.fx.setdefault(scope.path, (_paths(trace, scope), []))[1].append(edit)
    return report


def _rewrite(trace: Trace, site: Site, algorithm: str, swappable_ups: set[fx.Node],
             plan: Plan) -> tuple[list[Swap], ConvertedSite | None]:
    """The swaps for one site (rules 1-3 of the module docstring), or an fx edit queued in
    ``plan`` (rule 4, reported once the edit succeeded: None); :class:`_Rejected` or
    :class:`~upconv.convert.conv_params.Unsupported` when none applies."""
    params = _conv_params(site)
    try:
        conv_call = _conv_module(trace, site)
    except _Rejected as conv_why:
        conv_call, conv_reason = None, conv_why
    try:
        up_call = _up_module(trace, site, swappable_ups) if conv_call is not None else None
        up_reason = None
    except _Rejected as why:
        up_call, up_reason = None, why
    if conv_call is not None and up_call is not None and site.mean_of == 1:
        prelus = _prelu_swaps(trace, site)
        folds = _folds(trace, site)
        params = pair_ops.fold_scalars(params, folds, on_input=site.kind == RESIZE)
        prelus += [Swap(_paths(trace, call), nn.Identity()) for _, _, call in folds]
        if site.kind == SUBPIXEL:
            deconv = build_subpixel_deconv(params, site.scale, algorithm, site.crop, site.crop)
        else:
            deconv = build_resize_deconv(params, site.scale, algorithm)
        swaps = [Swap(_paths(trace, conv_call), deconv),
                 Swap(_paths(trace, up_call), nn.Identity()), *prelus]
        how = ("folded " + ", ".join(c.path for _, _, c in folds)) if folds else ""
        return swaps, _report(site, conv_call.path, deconv, algorithm, how)
    whole = _enclosing(trace, site)
    if whole is not None:
        if site.kind == SUBPIXEL:
            deconv = build_subpixel_deconv(params, site.scale, algorithm)
        else:
            deconv = build_resize_deconv(params, site.scale, algorithm)
        return ([Swap(_paths(trace, whole), deconv)],
                _report(site, whole.path, deconv, algorithm,
                        f"{whole.path or 'the model'} replaced as a whole"))
    if site.kind == RESIZE and conv_call is not None:
        deconv = build_resize_deconv(params, site.scale, algorithm, cls=StridedInputDeconv2d,
                                     input_stride=site.scale)
        rh, rw = site.scale
        how = (f"the resize in forward still runs; the deconvolution reads every "
               f"{rh}x{rw}-th pixel of it")
        return [Swap(_paths(trace, conv_call), deconv)], _report(site, conv_call.path, deconv,
                                                                 algorithm, how)
    try:
        _fx_edit(trace, site, algorithm, conv_call, plan)
        return [], None
    except _Rejected as fx_why:
        first = conv_reason if conv_call is None else up_reason
        raise _Rejected(f"{first}; {fx_why}" if first is not None else str(fx_why)) from None


def _layer(trace: Trace, node: fx.Node, algorithm: str,
           plan: Plan) -> None:
    """upconv's own layers: trained ones become ``.to_deconv()``, deconvolutions stay."""
    layer = node.meta["module"]
    path = str(node.target)
    if isinstance(layer, Deconv2d):
        plan.skipped.append(SkippedSite(path, type(layer).__name__, NATIVE_DECONV_REASON))
        return
    kind = SUBPIXEL if isinstance(layer, SubPixelConv2d) else RESIZE
    if len(trace.calls_of(layer)) != 1:
        plan.skipped.append(SkippedSite(path, type(layer).__name__,
                                        "the layer is called at more than one place"))
        return
    deconv = layer.to_deconv(algorithm)
    plan.swaps.append(Swap(tuple(trace.paths[id(layer)]), deconv))
    plan.converted.append(ConvertedSite(path, kind, layer.scale, layer.kernel_size,
                                        deconv.kernel_size, algorithm, bias_kind(deconv),
                                        type(layer).__name__))


def plan_rewrites(trace: Trace, found: list[Site | Skip], algorithm: str) -> Plan:
    """Swaps and report entries for every finding of :func:`~upconv.convert.sites.find_sites`
    and every upconv layer in ``trace``, in execution order."""
    plan = Plan([], [], [])
    swappable_ups: set[fx.Node] = set()
    for f in found:
        if isinstance(f, Site):
            try:
                _conv_module(trace, f)
                swappable_ups.update(f.ups)
            except _Rejected:
                pass
    order = {n: i for i, n in enumerate(trace.nodes)}
    items: list[tuple[int, object]] = [(order[f.up if isinstance(f, Site) else f.node], f)
                                       for f in found]
    items += [(order[n], n) for n in trace.op_nodes()
              if n.op == "call_module" and isinstance(n.meta.get("module"), UPCONV_LAYERS)]
    for _, item in sorted(items, key=lambda t: t[0]):
        if isinstance(item, fx.Node):
            _layer(trace, item, algorithm, plan)
        elif isinstance(item, Skip):
            plan.skipped.append(SkippedSite(item.label, item.kind, item.reason,
                                            item.limitation))
        else:
            try:
                swaps, converted = _rewrite(trace, item, algorithm, swappable_ups, plan)
            except (_Rejected, Unsupported) as why:
                plan.skipped.append(SkippedSite(site_label(item), item.kind, str(why),
                                                limitation=True))
                continue
            plan.swaps.extend(swaps)
            if converted is not None:
                plan.converted.append(converted)
    return plan


def apply_swaps(model: nn.Module, swaps: list[Swap]) -> nn.Module:
    """Install every swap in ``model`` (in place); returns ``model``, or the replacement of the
    root when a swap's path is ``""``."""
    root = model
    for swap in swaps:
        for path in swap.paths:
            if not path:
                root = swap.module
                continue
            parent_path, _, name = path.rpartition(".")
            setattr(model.get_submodule(parent_path), name, swap.module)
    return root


def apply_fx(model: nn.Module, plan: Plan) -> nn.Module:
    """Rule 4 on ``model`` (swaps already applied), innermost scopes first; each edit's site
    goes to ``plan.converted``, or to ``plan.skipped`` when torch.fx cannot trace the scope.
    Returns ``model`` or, when the root itself was rewritten, its GraphModule."""
    for scope in sorted(plan.fx, key=lambda p: (-p.count("."), -len(p))):
        paths, edits = plan.fx[scope]
        module = model.get_submodule(scope) if scope else model
        where = scope or type(module).__name__
        try:
            gm = rewrite_scope(module, edits)
        except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...)
            why = f"{type(err).__name__}: {err}".splitlines()[0]
            for edit in edits:
                plan.skipped.append(SkippedSite(
                    edit.report.pattern.split(";")[0], edit.kind,
                    f"a functional op in {where}.forward, and torch.fx cannot trace that "
                    f"forward ({why})", limitation=True))
            continue
        model = apply_swaps(model, [Swap(paths, gm)])
        prefix = f"{scope}." if scope else ""
        plan.converted.extend(dataclasses.replace(e.report, path=prefix + e.installed_at)
                              for e in edits)
    return model


__all__ = ["Plan", "Swap", "apply_fx", "apply_swaps", "label", "plan_rewrites"]
