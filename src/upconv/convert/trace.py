"""Record what a model computes on real inputs: an ATen-level ``torch.fx`` graph of one forward.

:func:`record` runs ``model(*inputs)`` once, for real, under a
:class:`~torch.utils._python_dispatch.TorchDispatchMode`, with forward hooks on every submodule.
Each ATen op that runs becomes a ``call_function`` node of an :class:`torch.fx.Graph` whose
arguments are the nodes that produced its tensors; parameters and buffers are ``get_attr``
nodes named by their path; inputs are placeholders. Every node carries the module calls that
were active when it ran (``node.meta["calls"]``, outermost first) and its output shape.

A real run sees what symbolic tracers cannot (data-dependent ``if``, ``.item()``, attribute
assignment in ``forward``, iteration over module lists, default arguments, einops) and
records the branch the example input takes. It is meant for throwaway copies: hooks are added
to (and removed from) ``model`` itself, and the forward runs with ``torch.no_grad()``.

``leaf_types`` modules (upconv's own layers) are recorded as one ``call_module`` node each;
the ops inside them are not.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakIdKeyDictionary


@dataclass(eq=False)
class ModuleCall:
    """One call of a submodule during the recorded forward.

    ``start`` / ``end`` delimit the graph nodes created during the call (``nodes[start:end]``
    of :attr:`Trace.nodes`, nested calls included); ``inputs`` / ``outputs`` are the nodes of
    its tensor arguments and results. ``index`` counts the module's calls (0 for the first).
    """

    path: str
    module: nn.Module
    index: int
    inputs: list[fx.Node] = field(default_factory=list)
    outputs: list[fx.Node] = field(default_factory=list)
    start: int = 0
    end: int = 0


@dataclass
class Trace:
    """A recorded forward: the graph, its nodes in execution order, and the module calls."""

    graph: fx.Graph
    nodes: list[fx.Node]
    calls: list[ModuleCall]
    paths: dict[int, list[str]]  # id(module) -> every path it is registered at

    def calls_of(self, module: nn.Module) -> list[ModuleCall]:
        """Every recorded call of ``module``, in order."""
        return [c for c in self.calls if c.module is module]

    def ops_in(self, call: ModuleCall) -> list[fx.Node]:
        """The op nodes (``call_function`` / ``call_module``) run inside ``call``."""
        return [n for n in self.nodes[call.start:call.end]
                if n.op in ("call_function", "call_module")]

    def op_nodes(self) -> Iterator[fx.Node]:
        return (n for n in self.nodes if n.op in ("call_function", "call_module"))


def calls_of_node(node: fx.Node) -> tuple[ModuleCall, ...]:
    """The module calls active when ``node`` ran, outermost (the root) first."""
    return node.meta.get("calls", ())


def innermost_call(node: fx.Node) -> ModuleCall | None:
    calls = calls_of_node(node)
    return calls[-1] if calls else None


def shape_of(node: object) -> tuple[int, ...] | None:
    """The recorded output shape of a tensor-valued node, else None."""
    return node.meta.get("shape") if isinstance(node, fx.Node) else None


def alias_mutation(base: object, mutation: object) -> object:
    """Marker target: ``base`` after an in-place op (``mutation``) wrote into a view of it."""
    return base


class _Recorder(TorchDispatchMode):
    """Appends one node per ATen op to the graph; see :func:`record`."""

    def __init__(self, trace: Trace, owner: dict[int, str]) -> None:
        super().__init__()
        self.trace = trace
        self.values: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.owner = owner  # id(parameter / buffer) -> its path
        self.stack: list[ModuleCall] = []
        self.leaf_depth = 0
        self.constants = 0
        self.ordinals: dict[tuple[int, object], int] = {}
        self.call_counts: dict[int, int] = {}

    # --- nodes -------------------------------------------------------------------------
    def _append(self, node: fx.Node, value: object = None) -> fx.Node:
        node.meta["calls"] = tuple(self.stack)
        key = (id(self.stack[-1]) if self.stack else 0, node.target)
        node.meta["ordinal"] = self.ordinals[key] = self.ordinals.get(key, -1) + 1
        if isinstance(value, Tensor):
            node.meta["shape"] = tuple(value.shape)
            node.meta["dtype"] = value.dtype
        self.trace.nodes.append(node)
        return node

    def node_for(self, t: Tensor) -> fx.Node:
        """The node that produced ``t``; parameters, buffers and unseen tensors get one now."""
        node = self.values.get(t)
        if node is not None:
            return node
        graph = self.trace.graph
        path = self.owner.get(id(t))
        if path is not None:
            node = graph.get_attr(path)
        else:
            node = graph.placeholder(f"constant_{self.constants}")
            node.meta["constant"] = t
            self.constants += 1
        node.meta["tensor"] = t
        self._append(node, t)
        self.values[t] = node
        return node

    def _arg(self, a: object) -> object:
        return self.node_for(a) if isinstance(a, Tensor) else a

    # --- dispatch ----------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.leaf_depth:
            return out
        node = self.trace.graph.call_function(func, tree_map(self._arg, args),
                                              tree_map(self._arg, kwargs))
        self._append(node, out)
        self._bind_outputs(node, out)
        self._bind_mutations(func, node, args, kwargs)
        return out

    def _bind_outputs(self, node: fx.Node, out: object) -> None:
        if isinstance(out, Tensor):
            self.values[out] = node
        elif isinstance(out, (tuple, list)):
            node.meta["shapes"] = [tuple(o.shape) if isinstance(o, Tensor) else None
                                   for o in out]
            for i, o in enumerate(out):
                if isinstance(o, Tensor):
                    item = self._append(self.trace.graph.call_function(operator.getitem,
                                                                       (node, i)), o)
                    self.values[o] = item

    def _bind_mutations(self, func, node: fx.Node, args: tuple, kwargs: dict) -> None:
        """After an in-place op, its target (and the base a view target aliases) is ``node``."""
        schema = func._schema.arguments
        for i, a in enumerate(schema):
            if a.alias_info is None or not a.alias_info.is_write:
                continue
            t = args[i] if i < len(args) else kwargs.get(a.name)
            if not isinstance(t, Tensor):
                continue
            self.values[t] = node
            base = t._base
            if base is not None:
                marker = self.trace.graph.call_function(alias_mutation,
                                                        (self.node_for(base), node))
                self.values[base] = self._append(marker, base)

    # --- module calls ------------------------------------------------------------------
    def enter(self, module: nn.Module, path: str, leaf: bool, args: tuple, kwargs: dict):
        call = ModuleCall(path, module, self.call_counts.get(id(module), 0),
                          start=len(self.trace.nodes))
        if not self.leaf_depth:
            self.call_counts[id(module)] = call.index + 1
            call.inputs = [self.node_for(t) for t in tree_flatten((args, kwargs))[0]
                           if isinstance(t, Tensor)]
            self.trace.calls.append(call)
            self.stack.append(call)
        if leaf:
            self.leaf_depth += 1
        return call

    def leave(self, call: ModuleCall, leaf: bool, out: object) -> None:
        if leaf:
            self.leaf_depth -= 1
        if self.leaf_depth:
            return
        if leaf:  # one opaque node for the whole call
            node = self.trace.graph.call_module(call.path, tuple(call.inputs))
            node.meta["module"] = call.module
            self._append(node, out if isinstance(out, Tensor) else None)
            self._bind_outputs(node, out)
        if self.stack and self.stack[-1] is call:
            self.stack.pop()
        call.end = len(self.trace.nodes)
        call.outputs = [self.values[t] for t in tree_flatten(out)[0]
                        if isinstance(t, Tensor) and t in self.values]


def _owners(model: nn.Module) -> dict[int, str]:
    owner: dict[int, str] = {}
    for name, t in [*model.named_parameters(remove_duplicate=False),
                    *model.named_buffers(remove_duplicate=False)]:
        owner.setdefault(id(t), name)
    return owner


def module_paths(model: nn.Module) -> dict[int, list[str]]:
    """id(module) → every dotted path it is registered at (a shared module has several)."""
    paths: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(m), []).append(name)
    return paths


def record(model: nn.Module, inputs: Sequence[Any],
           leaf_types: tuple[type, ...] = ()) -> tuple[Trace, object]:
    """Run ``model(*inputs)`` once under the recorder; return the :class:`Trace` and the output.

    ``model`` gets temporary hooks (removed before returning): pass a throwaway copy. The
    caller chooses train/eval mode and the RNG state; the forward runs under ``no_grad``.
    """
    trace = Trace(fx.Graph(), [], [], module_paths(model))
    recorder = _Recorder(trace, _owners(model))
    for i, t in enumerate(tree_flatten(list(inputs))[0]):
        if isinstance(t, Tensor):
            node = trace.graph.placeholder(f"input_{i}")
            recorder._append(node, t)
            recorder.values[t] = node
    handles = []
    first_path = {i: p[0] for i, p in trace.paths.items()}
    open_calls: list[ModuleCall] = []

    def pre(module, args, kwargs):
        leaf = isinstance(module, leaf_types)
        open_calls.append(recorder.enter(module, first_path[id(module)], leaf, args, kwargs))

    def post(module, args, kwargs, out):
        call = open_calls.pop()
        recorder.leave(call, isinstance(module, leaf_types), out)

    for m in {id(m): m for m in model.modules()}.values():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True, always_call=True))
    try:
        with torch.no_grad(), recorder:
            out = model(*inputs)
        outs = [recorder.values.get(t) for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
        trace.graph.output(tuple(o for o in outs if o is not None))
    finally:
        for h in handles:
            h.remove()
    return trace, out
