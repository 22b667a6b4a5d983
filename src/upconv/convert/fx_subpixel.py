"""torch.fx site finding: conv → pixel shuffle (module or functional), for the cost walker."""

from __future__ import annotations

from torch import fx

from .conv_params import Unsupported
from .deconv_factory import subpixel_padding
from .fx_nodes import (
    FxSite,
    call_count,
    conv_params,
    is_conv,
    node_path,
    shuffle_factor,
)
from .report import SkippedSite

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
