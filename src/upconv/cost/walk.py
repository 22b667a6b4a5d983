"""Find the layers of a PyTorch or ONNX model and count each under every strategy.

Upsampling layers are recognised as :class:`~upconv.SubPixelConv2d`, :class:`~upconv.ResizeConv2d`,
:class:`~upconv.Deconv2d` / ``nn.ConvTranspose2d``, or the sub-pixel ``conv → pixel shuffle`` and
nearest ``resize → conv`` sites :func:`upconv.convert` would rewrite, module or functional
(torch.fx; module patterns only for models fx cannot trace) (ONNX: ``Conv → DepthToSpace``,
``Resize(nearest) → Conv``, ``ConvTranspose``). Every other convolution is counted as a plain
convolution so that whole-model ratios are honest; other layers (activations, pooling, ...)
are not counted.

A *strategy* is ``"trained"`` (upsampling layers as trained: C-SP / C-NN; a deconvolution
with its own algorithm) or an algorithm name (every upsampling layer converted and run with it).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..algorithms import ALGORITHMS
from ..shapes import IntPair, conv_same_padding4, padding4, pair
from .counts import Counts, check_dtype, count, count_conv, count_deconv

STRATEGIES: tuple[str, ...] = ("trained", *ALGORITHMS)


@dataclass(frozen=True)
class LayerSpec:
    """One counted layer: ``kind`` is ``"C-SP"``, ``"C-NN"``, ``"deconv"`` or ``"conv"``.

    ``params``: keyword arguments of :func:`count` (C-SP / C-NN, without op/algorithm),
    :func:`count_deconv` or :func:`count_conv`; ``trained_algorithm`` for a deconvolution.
    """

    name: str
    kind: str
    params: dict = field(hash=False)
    trained_algorithm: str = "stdd"

    @property
    def is_upsampling(self) -> bool:
        return self.kind != "conv"

    def describe(self) -> str:
        p = self.params
        shape = f"{p['in_channels']}x{p['height']}x{p['width']} -> {p['out_channels']}"
        if self.kind in ("C-SP", "C-NN"):
            return f"{self.kind} {shape}, k={p['kernel_size']}, r={p['scale']}"
        if self.kind == "deconv":
            return f"deconv {shape}, k={p['kernel_size']}, s={p['stride']}"
        return f"conv {shape}, k={p['kernel_size']}"


@dataclass(frozen=True)
class LayerCost:
    """A layer and its counts under each strategy (a plain conv has one: ``"conv"``)."""

    spec: LayerSpec
    counts: dict[str, Counts] = field(hash=False)

    def under(self, strategy: str) -> Counts:
        return self.counts.get(strategy, self.counts.get("conv"))  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelCost:
    """Every counted layer of a model, in execution order; ``notes`` say how it was walked
    when that limits what was recognised (e.g. the hook fallback for untraceable models)."""

    name: str
    input_shape: tuple[int, ...]
    dtype: str
    layers: tuple[LayerCost, ...]
    notes: tuple[str, ...] = ()

    @property
    def upsampling(self) -> tuple[LayerCost, ...]:
        return tuple(layer for layer in self.layers if layer.spec.is_upsampling)

    def under(self, strategy: str) -> list[Counts]:
        """The whole model's per-layer counts when upsampling layers use ``strategy``."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
        return [layer.under(strategy) for layer in self.layers]


def layer_cost(spec: LayerSpec, batch: int = 1, dtype: str = "float32") -> LayerCost:
    """Count ``spec`` under every strategy that applies to it."""
    p = dict(spec.params, batch=batch, dtype=dtype)
    if spec.kind == "conv":
        return LayerCost(spec, {"conv": count_conv(**p)})
    if spec.kind == "deconv":
        per = {a: count_deconv(algorithm=a, **p) for a in ALGORITHMS}
        return LayerCost(spec, {"trained": per[spec.trained_algorithm], **per})
    op = "D-" + spec.kind[2:]
    per = {a: count(op, algorithm=a, **p) for a in ALGORITHMS}
    return LayerCost(spec, {"trained": count(spec.kind, **p), **per})


def _model_cost(name: str, shape: Sequence[int], dtype: str, specs: list[LayerSpec],
                notes: tuple[str, ...] = ()) -> ModelCost:
    check_dtype(dtype)
    if not specs:
        raise ValueError(f"{name}: found no convolution or upsampling layer to count")
    batch = int(shape[0])
    return ModelCost(name, tuple(int(s) for s in shape), dtype,
                     tuple(layer_cost(s, batch, dtype) for s in specs), notes)


# --- PyTorch ------------------------------------------------------------------------------


def plain_conv_params(in_channels: int, out_channels: int, kernel_size: IntPair,
                      stride: int | Sequence[int], padding: int | str | Sequence[int],
                      dilation: int | Sequence[int], groups: int, h: int, w: int) -> dict:
    """:func:`count_conv` keywords of a conv on an ``h × w`` input (``"same"`` / ``"valid"``
    padding resolved)."""
    if isinstance(padding, str):
        padding = (conv_same_padding4("same", kernel_size) if padding == "same"
                   else (0, 0, 0, 0))
    return dict(in_channels=in_channels, out_channels=out_channels,
                kernel_size=tuple(kernel_size), height=h, width=w,
                stride=pair(stride, "stride"), padding=padding4(padding),
                dilation=pair(dilation, "dilation"), groups=groups)


def _conv_params(conv, h: int, w: int) -> dict:
    return plain_conv_params(conv.in_channels, conv.out_channels, tuple(conv.kernel_size),
                             conv.stride, conv.padding, conv.dilation, conv.groups, h, w)


def _is_same_unit_conv(conv) -> bool:
    """Stride 1, no dilation or groups, zero padding that keeps the size."""
    if tuple(conv.stride) != (1, 1) or tuple(conv.dilation) != (1, 1) or conv.groups != 1:
        return False
    if conv.padding_mode != "zeros":
        return False
    try:
        conv_same_padding4(conv.padding if isinstance(conv.padding, str) else
                           padding4(conv.padding), conv.kernel_size)
    except ValueError:
        return False
    return True


def _same_pad(conv) -> tuple[int, int, int, int]:
    return conv_same_padding4(conv.padding if isinstance(conv.padding, str) else
                              padding4(conv.padding), conv.kernel_size)


def module_spec(lname: str, mod, h: int, w: int) -> LayerSpec:
    """The spec of one upconv layer, transposed conv or (plain) ``nn.Conv2d`` on an ``h × w``
    input (:class:`~upconv.SubPixelConv2d` / :class:`~upconv.ResizeConv2d`: C-SP / C-NN)."""
    from torch import nn

    from ..layers import Deconv2d, SubPixelConv2d

    if isinstance(mod, nn.Conv2d):
        return LayerSpec(lname, "conv", _conv_params(mod, h, w))
    if isinstance(mod, Deconv2d | nn.ConvTranspose2d):
        if isinstance(mod, nn.ConvTranspose2d) and (
                mod.groups != 1 or tuple(mod.dilation) != (1, 1)):
            raise ValueError(f"{lname}: ConvTranspose2d with groups or dilation is not "
                             "supported by the cost model")
        trained = mod.algorithm if isinstance(mod, Deconv2d) else "stdd"
        if trained not in ALGORITHMS:  # "auto" resolves to the paper's algorithm
            trained = "revd2"
        return LayerSpec(lname, "deconv", dict(
            in_channels=mod.in_channels, out_channels=mod.out_channels,
            kernel_size=tuple(mod.kernel_size), stride=tuple(mod.stride),
            padding=padding4(mod.padding), output_padding=tuple(mod.output_padding),
            height=h, width=w), trained)
    kind = "C-SP" if isinstance(mod, SubPixelConv2d) else "C-NN"
    return LayerSpec(lname, kind, dict(
        in_channels=mod.in_channels, out_channels=mod.out_channels,
        kernel_size=mod.kernel_size, scale=mod.scale, padding=mod.padding, height=h, width=w))


def walk_module(model, input_shape: Sequence[int], *, dtype: str = "float32",
                name: str | None = None) -> ModelCost:
    """Count every layer of ``model`` (an ``nn.Module``) on an input of ``input_shape``
    ``(N, C, H, W)``, without compute (meta device, or a real pass for ops without meta kernels).

    Traced with torch.fx, the sub-pixel / nearest-resize sites are those
    :func:`upconv.convert` would rewrite, module or functional (``F.pixel_shuffle``,
    ``F.interpolate``, ``F.conv2d``; see :mod:`upconv.cost.walk_fx`). A model fx cannot trace
    is walked with module hooks instead (module patterns only) and ``notes`` says so.
    """
    from torch import nn

    from .walk_fx import NotTraceable, fx_layer_specs

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be (N, C, H, W) with positive sizes, got {shape}")
    label = name or type(model).__name__
    try:
        specs = fx_layer_specs(model, shape)
    except NotTraceable as why:
        note = (f"torch.fx could not trace the model ({why}); walked with module hooks: "
                "functional F.pixel_shuffle / F.interpolate / F.conv2d calls are not "
                "recognised (their convs count as plain convs, functional convs not at all)")
        return _model_cost(label, shape, dtype, _hook_specs(model, shape), (note,))
    return _model_cost(label, shape, dtype, specs)


def _hook_specs(model, shape: tuple[int, ...]) -> list[LayerSpec]:
    """The fallback walk: one forward pass with module hooks; module patterns only."""
    import torch
    from torch import nn

    from ..layers import Deconv2d, ResizeConv2d, SubPixelConv2d

    leaves = (SubPixelConv2d, ResizeConv2d, Deconv2d, nn.ConvTranspose2d, nn.Conv2d,
              nn.PixelShuffle, nn.Upsample)
    calls: list[tuple[str, nn.Module, object, object]] = []
    stack: list[nn.Module] = []

    def pre(mod, args):
        stack.append(mod)

    def post(mod, args, out):
        stack.pop()
        if isinstance(mod, leaves) and not any(isinstance(m, leaves) for m in stack):
            calls.append((names[id(mod)], mod, args[0] if args else None, out))

    def run(m: nn.Module, device: str) -> None:
        handles = []
        for mod in m.modules():
            handles.append(mod.register_forward_pre_hook(pre))
            handles.append(mod.register_forward_hook(post))
        try:
            with torch.no_grad():
                m(torch.zeros(shape, device=device))
        finally:
            for h in handles:
                h.remove()

    try:
        meta = copy.deepcopy(model).to("meta")
        names = {id(mod): n or type(mod).__name__ for n, mod in meta.named_modules()}
        run(meta.eval(), "meta")
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: run for real
        calls.clear()
        stack.clear()
        names = {id(mod): n or type(mod).__name__ for n, mod in model.named_modules()}
        try:
            run(model, "cpu")
        except RuntimeError as err:
            raise ValueError(f"the model's forward pass fails on an input of shape {shape}: "
                             f"{str(err).splitlines()[0]}") from None

    specs: list[LayerSpec] = []
    consumed: set[int] = set()
    for i, (lname, mod, x, y) in enumerate(calls):
        if i in consumed:
            continue
        nxt = calls[i + 1] if i + 1 < len(calls) else None
        _, _, h, w = x.shape
        if isinstance(mod, nn.Conv2d):
            if (nxt is not None and isinstance(nxt[1], nn.PixelShuffle) and nxt[2] is y
                    and _is_same_unit_conv(mod)
                    and mod.out_channels % nxt[1].upscale_factor**2 == 0):
                r = nxt[1].upscale_factor
                consumed.add(i + 1)
                specs.append(LayerSpec(f"{lname}+{nxt[0]}", "C-SP", dict(
                    in_channels=mod.in_channels, out_channels=mod.out_channels // r**2,
                    kernel_size=tuple(mod.kernel_size), scale=r, padding=_same_pad(mod),
                    height=h, width=w)))
            else:
                specs.append(module_spec(lname, mod, h, w))
        elif isinstance(mod, nn.Upsample):
            ratio = (y.shape[2] / h, y.shape[3] / w)
            if (nxt is not None and isinstance(nxt[1], nn.Conv2d) and nxt[2] is y
                    and mod.mode == "nearest" and all(float(r).is_integer() for r in ratio)
                    and _is_same_unit_conv(nxt[1])):
                conv = nxt[1]
                consumed.add(i + 1)
                specs.append(LayerSpec(f"{lname}+{nxt[0]}", "C-NN", dict(
                    in_channels=conv.in_channels, out_channels=conv.out_channels,
                    kernel_size=tuple(conv.kernel_size), scale=tuple(int(r) for r in ratio),
                    padding=_same_pad(conv), height=h, width=w)))
        elif not isinstance(mod, nn.PixelShuffle):
            specs.append(module_spec(lname, mod, h, w))
    return specs


# --- ONNX ---------------------------------------------------------------------------------


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _onnx_pads(attrs: dict, kernel: Sequence[int], in_hw: Sequence[int],
               out_hw: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
               transposed: bool = False) -> tuple[int, int, int, int]:
    """ONNX ``pads`` [top, left, bottom, right] (or ``auto_pad``) as (top, bottom, left, right)."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", "VALID"):
        p = list(attrs.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
        return (p[0], p[2], p[1], p[3])
    pads = []
    for k, i, o, s, d in zip(kernel, in_hw, out_hw, stride, dilation, strict=True):
        total = ((i - 1) * s + (k - 1) * d + 1 - o if transposed
                 else max(0, (o - 1) * s + (k - 1) * d + 1 - i))
        small = total // 2
        pads.append((total - small, small) if auto == "SAME_LOWER" else (small, total - small))
    return (*pads[0], *pads[1])


def walk_onnx(model, input_shape: Sequence[int] | None = None, *, dtype: str = "float32",
              name: str | None = None) -> ModelCost:
    """Count every layer of an ONNX model (a path or a ``ModelProto``). ``input_shape`` fixes
    the first graph input's shape (needed when it has symbolic dimensions)."""
    import onnx

    if isinstance(model, str | os.PathLike):
        if not os.path.isfile(model):
            raise ValueError(f"ONNX file {str(model)!r} does not exist")
        label = name or os.path.basename(str(model))
        model = onnx.load(str(model))
    else:
        label = name or (model.graph.name or "onnx model")
    model = copy.deepcopy(model)
    graph = model.graph
    inits = {t.name: tuple(t.dims) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if not inputs:
        raise ValueError(f"{label}: the graph has no input")
    dims = inputs[0].type.tensor_type.shape.dim
    if input_shape is not None:
        if len(input_shape) != len(dims):
            raise ValueError(f"input_shape {tuple(input_shape)} has {len(input_shape)} dims; "
                             f"the model's input {inputs[0].name!r} has {len(dims)}")
        for d, v in zip(dims, input_shape, strict=True):
            d.ClearField("dim_param")
            d.dim_value = int(v)
        # shapes recorded at export time (an exporter's example input) are stale now
        del graph.value_info[:]
        for out in graph.output:
            out.type.tensor_type.ClearField("shape")
    shape0 = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if None in shape0:
        raise ValueError(f"{label}: input {inputs[0].name!r} has symbolic dimensions "
                         f"{[d.dim_param or '?' for d in dims]}; pass input_shape")
    model = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int, ...]] = dict(inits)
    for v in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        dd = v.type.tensor_type.shape.dim
        if dd and all(d.HasField("dim_value") for d in dd):
            shapes[v.name] = tuple(d.dim_value for d in dd)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)

    def shape_of(tensor: str, node) -> tuple[int, ...]:
        if tensor not in shapes:
            who = node.name or node.op_type
            raise ValueError(f"{label}: no static shape for {tensor!r} (at {who}); "
                             "pass input_shape")
        return shapes[tensor]

    def only_consumer(tensor: str, op_type: str):
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    specs: list[LayerSpec] = []
    consumed: set[int] = set()
    for node in model.graph.node:
        if id(node) in consumed:
            continue
        nname = node.name or f"{node.op_type}_{len(specs)}"
        if node.op_type in ("Conv", "ConvTranspose"):
            a = _attrs(node)
            _, cin, h, w = shape_of(node.input[0], node)
            wshape = shape_of(node.input[1], node)
            kernel = tuple(a.get("kernel_shape", wshape[2:]))
            stride = tuple(a.get("strides", (1, 1)))
            dil = tuple(a.get("dilations", (1, 1)))
            out = shape_of(node.output[0], node)
            transposed = node.op_type == "ConvTranspose"
            pads = _onnx_pads(a, kernel, (h, w), out[2:], stride, dil, transposed)
            group = int(a.get("group", 1))
            if transposed:
                if group != 1 or dil != (1, 1):
                    raise ValueError(f"{label}: {nname}: ConvTranspose with group or dilation "
                                     "is not supported by the cost model")
                specs.append(LayerSpec(nname, "deconv", dict(
                    in_channels=cin, out_channels=out[1], kernel_size=kernel, stride=stride,
                    padding=pads, output_padding=tuple(a.get("output_padding", (0, 0))),
                    height=h, width=w)))
                continue
            unit = stride == (1, 1) and dil == (1, 1) and group == 1
            same = unit and (pads[0] + pads[1], pads[2] + pads[3]) == (kernel[0] - 1,
                                                                        kernel[1] - 1)
            d2s = only_consumer(node.output[0], "DepthToSpace")
            if same and d2s is not None:
                r = int(_attrs(d2s)["blocksize"])
                consumed.add(id(d2s))
                specs.append(LayerSpec(f"{nname}+{d2s.name or 'DepthToSpace'}", "C-SP", dict(
                    in_channels=cin, out_channels=out[1] // (r * r), kernel_size=kernel,
                    scale=r, padding=pads, height=h, width=w)))
                continue
            specs.append(LayerSpec(nname, "conv", dict(
                in_channels=cin, out_channels=out[1], kernel_size=kernel, height=h, width=w,
                stride=stride, padding=pads, dilation=dil, groups=group)))
        elif node.op_type in ("Resize", "Upsample"):
            a = _attrs(node)
            mode = a.get("mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            conv = only_consumer(node.output[0], "Conv")
            _, cin, h, w = shape_of(node.input[0], node)
            out = shape_of(node.output[0], node)
            ratio = (out[2] / h, out[3] / w)
            if mode != "nearest" or conv is None or not all(r.is_integer() for r in ratio):
                continue
            ca = _attrs(conv)
            wshape = shape_of(conv.input[1], conv)
            kernel = tuple(ca.get("kernel_shape", wshape[2:]))
            stride, dil = tuple(ca.get("strides", (1, 1))), tuple(ca.get("dilations", (1, 1)))
            cout = shape_of(conv.output[0], conv)
            pads = _onnx_pads(ca, kernel, out[2:], cout[2:], stride, dil)
            if (stride, dil, int(ca.get("group", 1))) != ((1, 1), (1, 1), 1) or (
                    pads[0] + pads[1] != kernel[0] - 1 or pads[2] + pads[3] != kernel[1] - 1):
                continue
            consumed.add(id(conv))
            specs.append(LayerSpec(f"{nname}+{conv.name or 'Conv'}", "C-NN", dict(
                in_channels=cin, out_channels=cout[1], kernel_size=kernel,
                scale=(int(ratio[0]), int(ratio[1])), padding=pads, height=h, width=w)))
    return _model_cost(label, shape0, dtype, specs)


def builtin_model(name: str, scale: int = 3, upsampler: str = "subpixel"):
    """A model the CLI knows by name: ``espcn`` (:class:`upconv.sr.ESPCN`)."""
    if name.lower() != "espcn":
        raise ValueError(f"unknown model {name!r}; known: espcn (or pass --onnx PATH)")
    from ..sr.models import ESPCN

    return ESPCN(scale=scale, upsampler=upsampler)  # type: ignore[arg-type]


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` (inf when the denominator is 0)."""
    return math.inf if denominator == 0 else numerator / denominator
