"""Reading and editing torch.fx graphs: what a node computes, and swapping nodes for a module."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..layers import Deconv2d, ResizeConv2d, SubPixelConv2d
from ..shapes import IntPair, Pad4
from .conv_params import ConvParams, Unsupported

UPCONV_LEAVES = (SubPixelConv2d, ResizeConv2d, Deconv2d)

_CONV_FUNCTIONS = (F.conv2d, torch.conv2d)
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_SHUFFLE_FUNCTIONS = (F.pixel_shuffle, torch.pixel_shuffle)
_INTERP_FUNCTIONS = (F.interpolate, F.upsample, F.upsample_nearest)
_INTERP_ARGS = ("input", "size", "scale_factor", "mode", "align_corners",
                "recompute_scale_factor", "antialias")


@dataclass(frozen=True)
class FxSite:
    """A convertible two-node chain of a traced graph.

    ``kind`` is ``"sub-pixel"`` (``first`` = conv → ``last`` = shuffle) or ``"resize"``
    (``first`` = nearest resize → ``last`` = conv); ``conv_node`` is the chain's conv and
    ``conv`` its parameters; ``scale`` is ``(rh, rw)``; ``padding`` the conv's same padding
    ``(top, bottom, left, right)``; ``where`` a readable ``a → b`` label.
    """

    kind: str
    first: fx.Node
    last: fx.Node
    conv_node: fx.Node
    conv: ConvParams
    scale: IntPair
    padding: Pad4
    where: str


class LeafTracer(fx.Tracer):
    """fx tracer that keeps upconv's own layers whole, so they show up as sites."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, UPCONV_LEAVES) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model`` (upconv layers as leaves); raises what fx raises."""
    graph = LeafTracer().trace(model)
    name = type(model).__name__
    return fx.GraphModule(model, graph, name)


def _bind(node: fx.Node, names: tuple[str, ...]) -> dict[str, Any]:
    bound = dict(zip(names, node.args, strict=False))
    bound.update(node.kwargs)
    return bound


def module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The module a ``call_module`` node calls, else None."""
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _attr_tensor(gm: fx.GraphModule, value: object, what: str) -> torch.Tensor | None:
    if value is None:
        return None
    if isinstance(value, fx.Node) and value.op == "get_attr":
        return operator.attrgetter(value.target)(gm)
    raise Unsupported(f"{what} is computed at run time, not a stored parameter")


def is_conv(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A ``nn.Conv2d`` call or an ``F.conv2d`` / ``torch.conv2d`` call."""
    if node.op == "call_module":
        return isinstance(module_of(gm, node), nn.Conv2d)
    return node.op == "call_function" and node.target in _CONV_FUNCTIONS


def conv_params(gm: fx.GraphModule, node: fx.Node) -> ConvParams:
    """A conv node's weights and settings (:class:`Unsupported` if they are not parameters)."""
    m = module_of(gm, node)
    if isinstance(m, nn.Conv2d):
        return ConvParams(m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups,
                          m.padding_mode)
    a = conv_arguments(node)
    return ConvParams(_attr_tensor(gm, a["weight"], "conv weight"),
                      _attr_tensor(gm, a.get("bias"), "conv bias"), a.get("stride", 1),
                      a.get("padding", 0), a.get("dilation", 1), a.get("groups", 1))


def conv_arguments(node: fx.Node) -> dict[str, Any]:
    """An ``F.conv2d`` / ``torch.conv2d`` node's arguments by name (``input``, ``weight``, ...)."""
    return _bind(node, _CONV_ARGS)


def conv_input(node: fx.Node) -> fx.Node:
    return node.args[0] if node.args else node.kwargs["input"]


def shuffle_factor(gm: fx.GraphModule, node: fx.Node) -> int | None:
    """The upscale factor of a pixel-shuffle node, or None if ``node`` is not one."""
    m = module_of(gm, node)
    if isinstance(m, nn.PixelShuffle):
        return int(m.upscale_factor)
    if node.op == "call_function" and node.target in _SHUFFLE_FUNCTIONS:
        r = _bind(node, ("input", "upscale_factor"))["upscale_factor"]
        return r if isinstance(r, int) else None
    return None


def interpolation(gm: fx.GraphModule, node: fx.Node) -> dict[str, Any] | None:
    """``{"mode", "scale_factor", "size"}`` of a resize node, or None if ``node`` is not one."""
    m = module_of(gm, node)
    if isinstance(m, nn.Upsample):
        return {"mode": m.mode, "scale_factor": m.scale_factor, "size": m.size}
    if node.op == "call_function" and node.target in _INTERP_FUNCTIONS:
        a = _bind(node, _INTERP_ARGS)
        mode = "nearest" if node.target is F.upsample_nearest else a.get("mode", "nearest")
        return {"mode": mode, "scale_factor": a.get("scale_factor"), "size": a.get("size")}
    return None


def node_path(node: fx.Node) -> str:
    """A readable location: the module path for modules, the node's name + ``()`` otherwise."""
    return str(node.target) if node.op == "call_module" else f"{node.name}()"


def tensor_shape(node: fx.Node) -> tuple[int, ...] | None:
    """The shape :class:`torch.fx.passes.shape_prop.ShapeProp` recorded, if any."""
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def call_count(gm: fx.GraphModule, target: str) -> int:
    return sum(1 for n in gm.graph.nodes if n.op == "call_module" and n.target == target)


def set_submodule(gm: fx.GraphModule, path: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``path`` (replacing what is there)."""
    parent_path, _, name = path.rpartition(".")
    parent = gm.get_submodule(parent_path) if parent_path else gm
    setattr(parent, name, module)


def fresh_path(gm: fx.GraphModule, stem: str) -> str:
    """A top-level attribute name starting with ``stem`` that ``gm`` does not use yet."""
    stem = stem.replace(".", "_")
    name, i = stem, 1
    while hasattr(gm, name):
        name, i = f"{stem}_{i}", i + 1
    return name
