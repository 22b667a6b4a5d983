"""Walk a PyTorch model's torch.fx graph: modules and functional calls, as the converter does.

Sub-pixel (``conv → pixel shuffle``) and nearest-resize (``resize → conv``) sites are exactly
those :func:`upconv.convert` would rewrite (:func:`upconv.convert.fx_sites.find_sites`), module
or functional (``F.pixel_shuffle``, ``F.interpolate``, ``F.conv2d``); every other
``nn.Conv2d`` / ``F.conv2d`` call is a plain convolution; upconv layers and transposed
convolutions count as in the hook walk. Shapes come from ``ShapeProp`` on the meta device.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..convert.fx_nodes import (
    UPCONV_LEAVES,
    FxSite,
    conv_arguments,
    conv_input,
    is_conv,
    module_of,
    node_path,
    tensor_shape,
    trace,
)
from ..convert.fx_sites import find_sites
from .walk import LayerSpec, module_spec, plain_conv_params

COUNTED_MODULES = (nn.Conv2d, nn.ConvTranspose2d, *UPCONV_LEAVES)


class NotTraceable(Exception):
    """torch.fx cannot trace the model; ``str()`` says why (first line of fx's error)."""


def _propagate(model: nn.Module, shape: tuple[int, ...], device: str) -> fx.GraphModule:
    gm = trace(copy.deepcopy(model).to(device)).eval()
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints errors
        ShapeProp(gm).propagate(torch.zeros(shape, device=device))
    return gm


def shaped_graph(model: nn.Module, shape: Sequence[int]) -> fx.GraphModule:
    """``model`` traced (upconv layers as leaves) with every node's shape for an input of
    ``shape``; on the meta device, or for real when an op has no meta kernel.

    Raises :class:`NotTraceable`, or ValueError when the forward pass fails.
    """
    shape = tuple(shape)
    try:
        trace(model)
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...)
        raise NotTraceable(f"{type(err).__name__}: {err}".splitlines()[0]) from None
    try:
        return _propagate(model, shape, "meta")
    except (NotImplementedError, RuntimeError):
        try:
            return _propagate(model, shape, "cpu")
        except RuntimeError as err:
            cause = err.__cause__ or err
            raise ValueError(f"the model's forward pass fails on an input of shape {shape}: "
                             f"{str(cause).splitlines()[0]}") from None


def _hw(node: fx.Node) -> tuple[int, int]:
    s = tensor_shape(node)
    if s is None or len(s) < 3:
        raise ValueError(f"{node_path(node)}: no 2-D input shape recorded")
    return int(s[-2]), int(s[-1])


def _site_spec(site: FxSite) -> LayerSpec:
    """C-SP (``conv → shuffle``) or C-NN (``resize → conv``) on the site's input size."""
    cout, cin = (int(d) for d in site.conv.weight.shape[:2])
    h, w = _hw(conv_input(site.first))
    name = f"{node_path(site.first)}+{node_path(site.last)}"
    common = dict(in_channels=cin, kernel_size=site.conv.kernel_size, padding=site.padding,
                  height=h, width=w)
    if site.kind == "sub-pixel":
        rh, rw = site.scale
        return LayerSpec(name, "C-SP", dict(common, out_channels=cout // (rh * rw),
                                            scale=rh if rh == rw else site.scale))
    return LayerSpec(name, "C-NN", dict(common, out_channels=cout, scale=site.scale))


def _functional_conv_spec(node: fx.Node) -> LayerSpec:
    """A plain conv from an ``F.conv2d`` node: channels and kernel from the recorded shapes."""
    a = conv_arguments(node)
    weight = a["weight"]
    wshape = tensor_shape(weight) if isinstance(weight, fx.Node) else None
    xshape = tensor_shape(conv_input(node))
    if wshape is None or xshape is None or len(wshape) != 4:
        raise ValueError(f"{node_path(node)}: no shapes recorded for the conv's input or weight")
    h, w = int(xshape[-2]), int(xshape[-1])
    return LayerSpec(node_path(node), "conv", plain_conv_params(
        int(xshape[-3]), int(wshape[0]), (int(wshape[2]), int(wshape[3])), a.get("stride", 1),
        a.get("padding", 0), a.get("dilation", 1), int(a.get("groups", 1)), h, w))


def fx_layer_specs(model: nn.Module, shape: Sequence[int]) -> list[LayerSpec]:
    """Every counted layer of ``model``, in execution order (see the module docstring)."""
    gm = shaped_graph(model, shape)
    sites = find_sites(gm)
    starts = {s.first: s for s in sites}
    inside = {s.last for s in sites}
    specs: list[LayerSpec] = []
    for node in gm.graph.nodes:
        if node in inside:
            continue
        if node in starts:
            specs.append(_site_spec(starts[node]))
            continue
        mod = module_of(gm, node)
        if isinstance(mod, COUNTED_MODULES):
            specs.append(module_spec(str(node.target), mod, *_hw(node.args[0])))
        elif is_conv(gm, node):
            specs.append(_functional_conv_spec(node))
    return specs
