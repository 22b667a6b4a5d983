"""Functional sites in a forward that torch.fx can trace: rewrite that one module's forward.

``F.pixel_shuffle(self.conv(x), 2)`` or ``F.pixel_shuffle(F.conv2d(x, self.w), 2)`` inside a
``forward`` that also does other work leaves no module to swap. When torch.fx can trace the
module whose ``forward`` makes the call — every submodule kept as a leaf, so only that one
``forward`` is traced — its graph is edited (the shuffle / resize node removed, the conv
replaced by the deconvolution) and the module is replaced by the resulting
``torch.fx.GraphModule``, at the same path, with the same submodules and parameters.
The rest of the model keeps its classes and forwards. The trace runs on a throwaway copy, so
attribute assignments in ``forward`` leave nothing behind.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import fx, nn

from .fx_nodes import (
    _CONV_FUNCTIONS,
    conv_arguments,
    fresh_path,
    interpolation,
    set_submodule,
    shuffle_factor,
)
from .report import ConvertedSite


class _ScopeTracer(fx.Tracer):
    """Traces only the root's own ``forward``: every submodule is a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


@dataclass
class FxEdit:
    """One site to rewrite inside a scope: the conv (module path relative to the scope, or the
    weight's path for ``F.conv2d``), the kind, and what replaces the conv."""

    kind: str
    conv_module: str | None
    conv_weight: str | None
    steps: int  # ops between conv and shuffle (or resize and conv)
    deconv: nn.Module
    report: ConvertedSite
    extra: dict[str, nn.Module] = field(default_factory=dict)  # relative path -> module
    installed_at: str = ""  # where the deconvolution ended up, relative to the scope


def _relative(path: str, scope: str) -> str:
    return path[len(scope) + 1:] if scope else path


def _is_shuffle(gm: fx.GraphModule, node: fx.Node) -> bool:
    return shuffle_factor(gm, node) is not None


def _is_resize(gm: fx.GraphModule, node: fx.Node) -> bool:
    return interpolation(gm, node) is not None


def _find_conv(gm: fx.GraphModule, edit: FxEdit) -> fx.Node:
    for node in gm.graph.nodes:
        if edit.conv_module is not None and node.op == "call_module" and \
                node.target == edit.conv_module:
            return node
        if edit.conv_module is None and node.op == "call_function" and \
                node.target in _CONV_FUNCTIONS:
            weight = conv_arguments(node).get("weight")
            if isinstance(weight, fx.Node) and weight.op == "get_attr" and \
                    weight.target == edit.conv_weight:
                return node
    raise LookupError("the convolution is not in the traced forward")


def _walk(node: fx.Node, steps: int, forward: bool, found) -> fx.Node:
    """Follow single-consumer links up to ``steps + 1`` ops until ``found(node)``."""
    for _ in range(steps + 1):
        if forward:
            if len(node.users) != 1:
                break
            node = next(iter(node.users))
        else:
            src = node.args[0] if node.args else None
            if not isinstance(src, fx.Node) or len(src.users) != 1:
                break
            node = src
        if found(node):
            return node
    raise LookupError("the upsampling op is not where the recorded forward had it")


def _replace_conv(gm: fx.GraphModule, conv: fx.Node, edit: FxEdit) -> None:
    if conv.op == "call_module":
        set_submodule(gm, str(conv.target), edit.deconv)
        conv.args = conv.args[:1]
        conv.kwargs = {}
        edit.installed_at = str(conv.target)
        return
    path = fresh_path(gm, f"{edit.conv_weight}_deconv")
    set_submodule(gm, path, edit.deconv)
    edit.installed_at = path
    source = conv.args[0] if conv.args else conv.kwargs["input"]
    with gm.graph.inserting_before(conv):
        new = gm.graph.call_module(path, (source,))
    conv.replace_all_uses_with(new)
    gm.graph.erase_node(conv)


def _bypass(gm: fx.GraphModule, node: fx.Node) -> None:
    node.replace_all_uses_with(node.args[0])
    gm.graph.erase_node(node)


def rewrite_scope(scope: nn.Module, edits: list[FxEdit]) -> fx.GraphModule:
    """``scope`` as a GraphModule with every edit applied; raises what fx raises, or
    LookupError when a site cannot be found in the traced graph."""
    graph = _ScopeTracer().trace(copy.deepcopy(scope))
    gm = fx.GraphModule(scope, graph, type(scope).__name__)
    for edit in edits:
        conv = _find_conv(gm, edit)
        if edit.kind == "sub-pixel":
            up = _walk(conv, edit.steps, True, lambda n: _is_shuffle(gm, n))
            _replace_conv(gm, conv, edit)
            _bypass(gm, up)
        else:
            up = _walk(conv, edit.steps, False, lambda n: _is_resize(gm, n))
            _bypass(gm, up)
            _replace_conv(gm, _find_conv(gm, edit), edit)
        for path, module in edit.extra.items():
            set_submodule(gm, path, module)
    for node in reversed(list(gm.graph.nodes)):
        if node.op == "get_attr" and not node.users:
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    return gm


__all__ = ["FxEdit", "rewrite_scope"]
