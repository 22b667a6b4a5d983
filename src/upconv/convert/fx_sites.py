"""The strict conv → shuffle / nearest resize → conv pairs of a torch.fx graph.

The cost walker (:mod:`upconv.cost.walk_fx`) counts what this finds on symbolically traced
models. :func:`upconv.convert` finds its sites on a recorded real forward instead
(:mod:`upconv.convert.sites`), which also sees untraceable models and ops between the pair.
"""

from __future__ import annotations

from torch import fx

from .fx_nodes import FxSite
from .fx_resize import resize_site
from .fx_subpixel import subpixel_site


def find_sites(gm: fx.GraphModule) -> list[FxSite]:
    """The convertible sub-pixel and nearest-resize chains of ``gm``, in graph order.

    ``gm`` needs ``ShapeProp`` shapes. As in :func:`upconv.convert`, sub-pixel chains come
    first: a conv already taken by one (``resize → conv → shuffle``) is no resize site.
    """
    nodes = list(gm.graph.nodes)
    subpixel = [s for s in (subpixel_site(gm, n) for n in nodes) if isinstance(s, FxSite)]
    taken = {s.conv_node for s in subpixel}
    resize = [s for s in (resize_site(gm, n) for n in nodes)
              if isinstance(s, FxSite) and s.conv_node not in taken]
    order = {n: i for i, n in enumerate(nodes)}
    return sorted(subpixel + resize, key=lambda s: order[s.first])
