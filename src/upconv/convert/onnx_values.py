"""What an ONNX tensor's value is before the graph runs: constants, and sizes as formulas.

Exporters compute weights, reshape targets and resize sizes inside the graph: an initializer
behind an ``Identity`` (deduplicated parameters), ``Constant`` nodes, a bias ``Unsqueeze``-d to
``(C, 1, 1)``, or ``Concat(Shape(x)[:2], Shape(x)[2:] * 2)``. :class:`GraphValues` answers

* :meth:`~GraphValues.constant`: the numpy value of a tensor that depends on constants only
  (each node folded with ``onnx.reference``, memoised), else None;
* :meth:`~GraphValues.symbolic`: an integer/float shape tensor as an array of ``sympy``
  expressions in the dims of the tensors it was computed from (a dim is an int when shape
  inference knows it, else the positive integer symbol ``"<tensor>:<axis>"``), else None.

Symbols stand for any size, so a formula that simplifies to a number holds for every input
size: that is the proof that a resize by ``Shape(x)·2`` is an integer ×2 resize.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import sympy
from onnx import helper, numpy_helper

from .onnx_dims import output_dims
from .onnx_graph import attributes

Dims = tuple[sympy.Expr, ...]

# Ops never folded: random, control flow (subgraphs), and anything outside the default domain.
_NOT_FOLDABLE = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                 "Multinomial", "Bernoulli", "If", "Loop", "Scan", "SequenceMap", "Dropout"}


def dim_symbol(tensor: str, axis: int) -> sympy.Symbol:
    """The unknown size of ``tensor``'s axis ``axis`` (a positive integer)."""
    return sympy.Symbol(f"{tensor}:{axis}", positive=True, integer=True)


def canon(expr: object) -> sympy.Expr:
    """``expr`` in a canonical form; sympy already normalises products and powers of sizes, so
    only sums need cancelling (``simplify`` would cost milliseconds per call)."""
    e = sympy.sympify(expr)
    if e.is_Add or (e.is_Mul and any(a.is_Add or (a.is_Pow and a.exp < 0) for a in e.args)):
        return sympy.cancel(e)
    return e


def as_int(expr: object) -> int | None:
    """``expr`` as an int if it is an integer constant, else None."""
    e = sympy.sympify(expr)
    return int(e) if e.is_Integer else None


class GraphValues:
    """Constant and symbolic values of the tensors of one graph.

    ``nodes`` are the graph's nodes in (topological) order, ``producer`` maps tensor names to
    nodes, ``initializers`` names to TensorProtos and ``shapes`` names to inferred shapes
    (ints where static, anything else where not). Which tensors are constant, and every
    tensor's dims, are found in one forward pass (no recursion along the network's depth).
    """

    def __init__(self, nodes, producer: dict[str, onnx.NodeProto],
                 initializers: dict[str, onnx.TensorProto], shapes: dict[str, tuple],
                 opset: int) -> None:
        self.nodes = nodes
        self.producer = producer
        self.initializers = initializers
        self.shapes = shapes
        self.opset = opset
        self._constants: dict[str, np.ndarray | None] = {}
        self._dims: dict[str, Dims | None] = {}
        self._overrides: dict[str, Dims] = {}
        self._foldable: set[str] | None = None

    def _forward_pass(self) -> None:
        """Mark the constant tensors and derive every tensor's dims, in graph order."""
        if self._foldable is not None:
            return
        self._foldable = set(self.initializers)
        for name, t in self.initializers.items():
            self._dims[name] = tuple(sympy.Integer(d) for d in t.dims)
        for node in self.nodes:
            default = node.domain in ("", "ai.onnx")
            for i in node.input:
                if i and i not in self._dims and i not in self.producer:  # a graph input
                    self._dims[i] = self._merge(i, None)
            ins = [self._dims.get(i) if i else None for i in node.input]
            if default and node.op_type not in _NOT_FOLDABLE and (
                    node.op_type == "Constant"
                    or (node.op_type == "Shape" and ins[0] is not None
                        and all(d.is_Integer for d in ins[0]))
                    or (node.op_type != "Shape" and node.input
                        and all(not i or i in self._foldable for i in node.input))):
                self._foldable.update(node.output)
            derived = output_dims(self, node, ins)
            for k, out in enumerate(node.output):
                self._dims[out] = self._merge(out, derived if k == 0 else None)

    def _merge(self, name: str, derived: Dims | None) -> Dims | None:
        """ONNX's static ints, else the derived formula, else the tensor's own symbol."""
        shape = self.shapes.get(name)
        if shape is None:
            return None if derived is None else tuple(canon(d) for d in derived)
        if derived is not None and len(derived) != len(shape):
            derived = None
        return tuple(sympy.Integer(d) if isinstance(d, int) and d > 0 else (
            canon(derived[i]) if derived is not None else dim_symbol(name, i))
            for i, d in enumerate(shape))

    # --- constants ---------------------------------------------------------------------------

    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` if it depends on initializers and constants only."""
        if not name:
            return None
        self._forward_pass()
        if name not in self._foldable:
            return None
        if name not in self._constants:
            self._constants[name] = self._fold(name)
        return self._constants[name]

    def _fold(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer[name]
        if node.op_type == "Constant":
            return _constant_node_value(node)
        if node.op_type == "Identity":
            return self.constant(node.input[0])
        if node.op_type == "Shape":
            a = attributes(node)
            ints = [int(d) for d in self.dims(node.input[0])]
            return np.asarray(ints[slice(a.get("start", 0), a.get("end"))], np.int64)
        inputs = [self.constant(i) if i else None for i in node.input]
        if any(v is None for i, v in zip(node.input, inputs, strict=True) if i):
            return None
        try:
            return _run_node(node, inputs, self.opset)[list(node.output).index(name)]
        except Exception:  # an op onnx.reference cannot run: not folded, so not a constant
            return None

    # --- symbolic sizes ----------------------------------------------------------------------

    def set_dims(self, name: str, dims: Dims) -> None:
        """Declare ``name``'s shape (used for tensors whose dims a caller derived)."""
        self._overrides[name] = tuple(sympy.sympify(d) for d in dims)

    def dims(self, name: str) -> Dims | None:
        """``name``'s shape as ints / formulas / symbols, or None when its rank is unknown.

        A dim shape inference left open is derived from the producer's inputs where
        :mod:`~upconv.convert.onnx_dims` has a rule for the op (value-by-value ops keep dims,
        a ``Conv`` keeps the batch and maps the spatial sizes, reshapes follow their target),
        else it is the tensor's own symbol.
        """
        if name in self._overrides:
            return self._overrides[name]
        self._forward_pass()
        if name not in self._dims:  # a graph input
            self._dims[name] = self._merge(name, None)
        return self._dims[name]

    def symbolic(self, name: str) -> np.ndarray | None:
        """A small numeric tensor (shapes, sizes, scales) as sympy expressions, or None."""
        value = self.constant(name)
        if value is not None:
            if value.size > 64 or value.dtype.kind not in "iuf":
                return None
            return _as_sympy(value)
        node = self.producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx"):
            return None
        rule = _SYMBOLIC_RULES.get(node.op_type)
        if rule is None:
            return None
        try:
            out = rule(self, node)
        except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError, AttributeError):
            return None  # best effort: an unknown value is reported as not known for all sizes
        return None if out is None else np.asarray(out, dtype=object)

    def _sym_inputs(self, node: onnx.NodeProto) -> list[np.ndarray | None]:
        return [self.symbolic(i) if i else None for i in node.input]


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    a = attributes(node)
    if "value" in a:
        return numpy_helper.to_array(a["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype)
    return None


def _run_node(node: onnx.NodeProto, inputs: list, opset: int) -> list[np.ndarray]:
    """Outputs of one node on constant inputs, by onnx's reference implementation."""
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if name else "" for i, name in enumerate(node.input)]
    copy = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))],
                            domain=node.domain)
    copy.attribute.extend(node.attribute)
    graph = helper.make_graph(
        [copy], "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for n, v in zip(names, inputs, strict=True) if n],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
         for o in copy.output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {n: v for n, v in zip(names, inputs, strict=True) if n}
    return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, feeds)]


def _to_sympy(v: object) -> sympy.Expr:
    if isinstance(v, (float, np.floating)):
        return sympy.Rational(float(v)) if np.isfinite(v) else sympy.nan
    return sympy.Integer(int(v))


def _as_sympy(value: np.ndarray) -> np.ndarray:
    return np.vectorize(_to_sympy, otypes=[object])(value).reshape(value.shape)


def _elementwise(op: Callable) -> Callable:
    def rule(values: GraphValues, node: onnx.NodeProto) -> np.ndarray | None:
        a, b = values._sym_inputs(node)[:2]
        if a is None or b is None:
            return None
        out = np.vectorize(lambda x, y: canon(op(x, y, node, values)),
                           otypes=[object])(a, b)
        return np.asarray(out, dtype=object)
    return rule


def _div(x, y, node, values):
    if not _is_integer_typed(values, node.input[0]):
        return x / y
    if (x / y).is_nonnegative:  # ONNX's integer division truncates: floor for sizes
        return sympy.floor(x / y)
    raise ValueError("integer division of a quantity of unknown sign")


def _is_integer_typed(values: GraphValues, name: str) -> bool:
    const = values.constant(name)
    if const is not None:
        return const.dtype.kind in "iu"
    node = values.producer.get(name)
    while node is not None:
        if node.op_type == "Cast":
            return attributes(node)["to"] not in _FLOAT_TYPES
        if node.op_type in ("Shape", "Size"):
            return True
        if not node.input:
            return False
        node = values.producer.get(node.input[0])
    return False


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                onnx.TensorProto.BFLOAT16}


def _shape_rule(values: GraphValues, node: onnx.NodeProto) -> np.ndarray | None:
    dims = values.dims(node.input[0])
    if dims is None:
        return None
    a = attributes(node)
    return np.asarray(list(dims)[slice(a.get("start", 0), a.get("end"))] or [], dtype=object)


def _cast_rule(values: GraphValues, node: onnx.NodeProto) -> np.ndarray | None:
    (x,) = values._sym_inputs(node)[:1]
    if x is None:
        return None
    if attributes(node)["to"] in _FLOAT_TYPES:
        return x
    return np.vectorize(_truncate, otypes=[object])(x).reshape(x.shape)


def _truncate(v: sympy.Expr) -> sympy.Expr:
    """A float → int cast (towards zero), where the sign is known."""
    if v.is_nonnegative:
        return sympy.floor(v)
    if v.is_nonpositive:
        return sympy.ceiling(v)
    raise ValueError("cast of a quantity of unknown sign")


def _gather_rule(values: GraphValues, node: onnx.NodeProto) -> np.ndarray | None:
    data = values.symbolic(node.input[0])
    idx = values.constant(node.input[1])
    if data is None or idx is None:
        return None
    return np.take(data, idx.astype(np.int64), axis=attributes(node).get("axis", 0))


def _slice_rule(values: GraphValues, node: onnx.NodeProto) -> np.ndarray | None:
    data = values.symbolic(node.input[0])
    if data is None or data.ndim != 1:
        return None
    a = attributes(node)
    if len(node.input) > 1:
        starts, ends = (values.constant(i) for i in node.input[1:3])
        steps = values.constant(node.input[4]) if len(node.input) > 4 else None
        if starts is None or ends is None:
            return None
    else:
        starts, ends, steps = a["starts"], a["ends"], None
    step = 1 if steps is None else int(np.asarray(steps).ravel()[0])
    axes = values.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if axes is not None and int(np.asarray(axes).ravel()[0]) not in (0, -1):
        return None
    return data[slice(int(np.asarray(starts).ravel()[0]), int(np.asarray(ends).ravel()[0]),
                      step)]


def _concat_rule(values: GraphValues, node: onnx.NodeProto) -> np.ndarray | None:
    parts = values._sym_inputs(node)
    if any(p is None for p in parts):
        return None
    return np.concatenate([p.reshape(-1) if p.ndim == 0 else p for p in parts],
                          axis=attributes(node).get("axis", 0))


def _reshape_like_rule(values: GraphValues, node: onnx.NodeProto) -> np.ndarray | None:
    """Unsqueeze / Squeeze / Reshape / Identity of a (at most 1-D) size tensor."""
    x = values.symbolic(node.input[0])
    if x is None:
        return None
    if node.op_type == "Identity":
        return x
    if node.op_type == "Unsqueeze":
        return _unsqueeze(x, values, node)
    if node.op_type == "Reshape":
        target = values.constant(node.input[1])
        if target is None:
            return None
        return x.reshape([int(t) if t != 0 else x.shape[i] for i, t in enumerate(target)])
    axes = attributes(node).get("axes")  # Squeeze
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = values.constant(node.input[1])
    drop = {int(a) % x.ndim for a in np.asarray(axes).ravel()} if axes is not None else {
        i for i, d in enumerate(x.shape) if d == 1}
    return x.reshape([d for i, d in enumerate(x.shape) if i not in drop])


def _unsqueeze(x: np.ndarray, values: GraphValues, node: onnx.NodeProto) -> np.ndarray:
    axes = attributes(node).get("axes")
    if axes is None:
        axes = values.constant(node.input[1])
    out = x
    for ax in sorted(int(a) % (x.ndim + len(axes)) for a in np.asarray(axes).ravel()):
        out = np.expand_dims(out, ax)
    return out


def _unary(fn: Callable) -> Callable:
    def rule(values: GraphValues, node: onnx.NodeProto) -> np.ndarray | None:
        x = values.symbolic(node.input[0])
        return None if x is None else np.vectorize(fn, otypes=[object])(x).reshape(x.shape)
    return rule


_SYMBOLIC_RULES: dict[str, Callable] = {
    "Shape": _shape_rule,
    "Cast": _cast_rule,
    "Gather": _gather_rule,
    "Slice": _slice_rule,
    "Concat": _concat_rule,
    "Unsqueeze": _reshape_like_rule,
    "Squeeze": _reshape_like_rule,
    "Reshape": _reshape_like_rule,
    "Identity": _reshape_like_rule,
    "Mul": _elementwise(lambda x, y, n, v: x * y),
    "Add": _elementwise(lambda x, y, n, v: x + y),
    "Sub": _elementwise(lambda x, y, n, v: x - y),
    "Div": _elementwise(_div),
    "Floor": _unary(sympy.floor),
    "Ceil": _unary(sympy.ceiling),
}
