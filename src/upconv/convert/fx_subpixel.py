"""torch.fx rewrite: conv → pixel shuffle (module or functional) ⇒ :class:`~upconv.Deconv2d`."""

from __future__ import annotations

from torch import fx

from .conv_params import Unsupported
from .deconv_factory import bias_kind, subpixel_deconv
from .fx_nodes import (
    call_count,
    conv_input,
    conv_params,
    fresh_path,
    is_conv,
    node_path,
    replace_chain,
    shuffle_factor,
)
from .report import ConversionReport, ConvertedSite

KIND = "sub-pixel"


def rewrite_subpixel(gm: fx.GraphModule, algorithm: str, report: ConversionReport) -> None:
    """Rewrite every pixel shuffle whose input is a convertible conv used only by it.

    Each pixel shuffle is either converted (with its conv) or reported as left alone.
    """
    for shuffle in list(gm.graph.nodes):
        r = shuffle_factor(gm, shuffle)
        if r is None:
            continue
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
            deconv = subpixel_deconv(conv, (r, r), algorithm)
        except Unsupported as why:
            report.skip(where, KIND, str(why))
            continue
        path = str(src.target) if src.op == "call_module" else fresh_path(gm, f"{src.name}_deconv")
        replace_chain(gm, src, shuffle, deconv, path, conv_input(src))
        report.add_converted(ConvertedSite(path, KIND, (r, r), conv.kernel_size,
                                           deconv.kernel_size, algorithm, bias_kind(deconv), where))
