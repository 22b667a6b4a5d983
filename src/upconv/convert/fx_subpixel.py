"""torch.fx rewrite: conv → pixel shuffle (module or functional) ⇒ :class:`~upconv.Deconv2d`."""

from __future__ import annotations

from torch import fx

from .conv_params import Unsupported
from .deconv_factory import bias_kind, subpixel_deconv, subpixel_padding
from .fx_nodes import (
    FxSite,
    call_count,
    conv_input,
    conv_params,
    fresh_path,
    is_conv,
    node_path,
    replace_chain,
    shuffle_factor,
)
from .report import ConversionReport, ConvertedSite, SkippedSite

KIND = "sub-pixel"


def subpixel_site(gm: fx.GraphModule, shuffle: fx.Node) -> FxSite | SkippedSite | None:
    """The convertible ``conv → shuffle`` chain ending at ``shuffle``, why it is left alone
    (a :class:`SkippedSite`), or None when ``shuffle`` is no pixel shuffle."""
    r = shuffle_factor(gm, shuffle)
    if r is None:
        return None
    src = shuffle.args[0] if shuffle.args else shuffle.kwargs.get("input")
    where = node_path(shuffle)
    try:
        if not isinstance(src, fx.Node) or not is_conv(gm, src):
            what = src.op if not isinstance(src, fx.Node) else node_path(src)
            raise Unsupported(f"its input is not a convolution (it is {what})")
        where = f"{node_path(src)} → {node_path(shuffle)}"
        if len(src.users) != 1:
            raise Unsupported("conv output used elsewhere too (not only by the shuffle)")
        if src.op == "call_module" and call_count(gm, src.target) != 1:
            raise Unsupported("the conv module is called at more than one place")
        conv = conv_params(gm, src)
        pad = subpixel_padding(conv, (r, r))
    except Unsupported as why:
        return SkippedSite(where, KIND, str(why))
    return FxSite(KIND, src, shuffle, src, conv, (r, r), pad, where)


def rewrite_subpixel(gm: fx.GraphModule, algorithm: str, report: ConversionReport) -> None:
    """Rewrite every pixel shuffle whose input is a convertible conv used only by it.

    Each pixel shuffle is either converted (with its conv) or reported as left alone.
    """
    for shuffle in list(gm.graph.nodes):
        site = subpixel_site(gm, shuffle)
        if site is None:
            continue
        if isinstance(site, SkippedSite):
            report.skip(site.path, site.kind, site.reason)
            continue
        src, conv, where = site.conv_node, site.conv, site.where
        try:
            deconv = subpixel_deconv(conv, site.scale, algorithm)
        except Unsupported as why:
            report.skip(where, KIND, str(why))
            continue
        path = str(src.target) if src.op == "call_module" else fresh_path(gm, f"{src.name}_deconv")
        replace_chain(gm, src, shuffle, deconv, path, conv_input(src))
        report.add_converted(ConvertedSite(path, KIND, site.scale, conv.kernel_size,
                                           deconv.kernel_size, algorithm, bias_kind(deconv), where))
