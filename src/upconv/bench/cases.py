"""What the suite times: every way to compute a layer's upsampling, as zero-argument callables.

Two functions per layer: ``SP`` (sub-pixel conv ≡ D-SP deconvolution) and ``NN`` (resize
conv ≡ D-NN deconvolution). Baselines are stock PyTorch and ONNX Runtime; ``upconv`` cases
run :func:`upconv.deconv2d` with the transformed weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..functional import check_deconv, deconv2d, resize_conv2d, sub_pixel_conv2d
from .zoo import Layer, LayerTensors

REFERENCE_ALGORITHMS = ("stdd", "strd", "revd", "revd2", "tdc")


@dataclass(frozen=True)
class Case:
    """One timed implementation. ``fn()`` returns the layer output (a Tensor or an ndarray)."""

    name: str
    function: str  # "SP" or "NN"
    family: str  # "baseline" or "upconv"
    fn: Callable[[], object]
    weights: int  # float32 weight values it reads
    note: str = ""
    expect: str = ""  # key into :func:`expected`; defaults to ``function``
    choice: Callable[[], str] | None = None  # algorithm="auto": the candidate it runs
    settle_s: float = 0.0  # idle seconds after this case before the next timed one
    preallocated: bool = False  # writes into an ``out=`` buffer: allocates no output

    @property
    def expected_key(self) -> str:
        return self.expect or self.function


def torch_cases(layer: Layer, t: LayerTensors) -> list[Case]:
    """PyTorch's own operators: C-SP (both memory formats), C-NN, ConvTranspose."""
    x, r = t.x, layer.r
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w_sp_cl = t.w_sp.contiguous(memory_format=torch.channels_last)
    pad = layer.k // 2
    sp, nn = t.geo_sp, t.geo_nn
    n_sp, n_nn, n_dsp, n_dnn = t.w_sp.numel(), t.w_nn.numel(), t.wd_sp.numel(), t.wd_nn.numel()
    return [
        Case("torch conv+pixel_shuffle (NCHW)", "SP", "baseline",
             lambda: F.pixel_shuffle(F.conv2d(x, t.w_sp, t.b_sp, padding=pad), r), n_sp),
        Case("torch conv+pixel_shuffle (channels_last)", "SP", "baseline",
             lambda: F.pixel_shuffle(F.conv2d(x_cl, w_sp_cl, t.b_sp, padding=pad), r), n_sp),
        Case("torch conv_transpose2d (D-SP weights)", "SP", "baseline",
             lambda: F.conv_transpose2d(x, t.wd_sp, None, sp.stride, sp.symmetric_padding),
             n_dsp, "periodic bias not added (favours the baseline)", "SP-nobias"),
        Case("torch interpolate(nearest)+conv", "NN", "baseline",
             lambda: F.conv2d(F.interpolate(x, scale_factor=r, mode="nearest"), t.w_nn,
                              t.b_nn, padding=pad), n_nn),
        Case("torch conv_transpose2d (D-NN weights)", "NN", "baseline",
             lambda: F.conv_transpose2d(x, t.wd_nn, t.b_nn, nn.stride, nn.symmetric_padding),
             n_dnn),
    ]


def upconv_cases(layer: Layer, t: LayerTensors, algorithms: tuple[str, ...],
                 with_out: bool = True) -> list[Case]:
    """:func:`upconv.deconv2d` with each algorithm on the D-SP and D-NN weights; with
    ``with_out``, revd2 also into a reused ``out=`` buffer.

    ``auto`` also runs on the channels_last input the channels_last baseline gets, so that
    "best of both layouts" compares like with like (auto tunes per layout).
    """
    x_cl = t.x.contiguous(memory_format=torch.channels_last)
    cases = []
    for algo in algorithms:
        layouts = ((None, t.x), ("channels_last", x_cl)) if algo == "auto" else ((None, t.x),)
        for layout, x in layouts:
            tag = "" if layout is None else f", {layout}"
            for fun in ("SP", "NN"):
                cases.append(Case(f"upconv {algo} (D-{fun}{tag})", fun, "upconv",
                                  _deconv(x, t, fun.lower(), algo),
                                  (t.wd_sp if fun == "SP" else t.wd_nn).numel(),
                                  choice=_auto_choice(x, t, fun.lower()) if algo == "auto"
                                  else None))
    for fun in ("SP", "NN") if with_out and "revd2" in algorithms else ():
        cases.append(Case(f"upconv revd2 (D-{fun}, out=)", fun, "upconv",
                          _deconv_into(t.x, t, fun.lower()),
                          (t.wd_sp if fun == "SP" else t.wd_nn).numel(),
                          "one output buffer reused by every call (video frames, tiles)",
                          preallocated=True))
    return cases


def reference_cases(layer: Layer, t: LayerTensors) -> list[Case]:
    """The readable reference algorithms (slow; the suite runs them at a reduced size)."""
    from ..algorithms import REFERENCES

    cases = []
    for algo in REFERENCE_ALGORITHMS:
        for fun, wd, b, geo in (("SP", t.wd_sp, t.bd_sp, t.geo_sp),
                                ("NN", t.wd_nn, t.b_nn, t.geo_nn)):
            out = geo.output_size(layer.h, layer.w)
            impl = REFERENCES[algo]
            cases.append(Case(f"reference {algo} (D-{fun})", fun, "upconv",
                              _bind(impl, t.x, wd, b, geo, out), wd.numel()))
    return cases


def _bind(impl, x, wd, b, geo, out):
    return lambda: impl(x, wd, b, geo.stride, geo.padding, geo.output_padding, out)


def _weights(t: LayerTensors, which: str) -> tuple:
    """``(weight, bias, geometry)`` of the D-SP (``"sp"``) or D-NN (``"nn"``) deconvolution."""
    return (t.wd_sp, t.bd_sp, t.geo_sp) if which == "sp" else (t.wd_nn, t.b_nn, t.geo_nn)


def _deconv(x: torch.Tensor, t: LayerTensors, which: str, algo: str) -> Callable[[], object]:
    wd, b, geo = _weights(t, which)
    return lambda: deconv2d(x, wd, b, geo.stride, geo.padding, algorithm=algo)


def _deconv_into(x: torch.Tensor, t: LayerTensors, which: str) -> Callable[[], object]:
    """revd2 writing into one preallocated output: no allocation, no page faults per call."""
    wd, b, geo = _weights(t, which)
    oh, ow = geo.output_size(x.shape[-2], x.shape[-1])
    out = torch.empty(x.shape[0], wd.shape[1], oh, ow)
    return lambda: deconv2d(x, wd, b, geo.stride, geo.padding, algorithm="revd2", out=out)


def _auto_choice(x: torch.Tensor, t: LayerTensors, which: str) -> Callable[[], str]:
    """The candidate ``algorithm="auto"`` settled on for this call (tuning it if not yet)."""
    from .. import autotune

    wd, b, geo = _weights(t, which)

    def choice() -> str:
        with torch.no_grad():
            return autotune.choose(check_deconv(x, wd, b, geo.stride, geo.padding))

    return choice


def expected(layer: Layer, t: LayerTensors) -> dict[str, torch.Tensor]:
    """The reference outputs every case is checked against: C-SP and C-NN in PyTorch."""
    return {"SP": sub_pixel_conv2d(t.x, t.w_sp, t.b_sp, layer.r),
            "SP-nobias": sub_pixel_conv2d(t.x, t.w_sp, None, layer.r),
            "NN": resize_conv2d(t.x, t.w_nn, t.b_nn, layer.r)}


#: Idle time after an ONNX Runtime case. Its default intra-op workers spin-wait for longer than
#: the suite's 50 ms gap: the REVD2 kernel on L1 ran 10.4-11.3 ms after 50 ms idle following
#: an ONNX Runtime case, 6.7 ms after 200 ms (and after an idle predecessor). Sessions keep
#: ONNX Runtime's defaults (spinning is ~10% faster for it on some layers).
ORT_SETTLE_S = 0.25


def ort_cases(layer: Layer, t: LayerTensors, threads: int) -> list[Case]:
    """ONNX Runtime: Conv + DepthToSpace, Resize + Conv, ConvTranspose (both weight sets)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    x_np = t.x.numpy()
    k, r, pad = layer.k, layer.r, layer.k // 2
    sp, nn = t.geo_sp, t.geo_nn

    def model(nodes, inits, out_shape):
        graph = helper.make_graph(
            nodes, "layer",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_np.shape))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
            [numpy_helper.from_array(np.ascontiguousarray(v.numpy()), name)
             for name, v in inits.items()])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                  ir_version=8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, {"x": x_np})[0]

    out = [layer.n, layer.c, r * layer.h, r * layer.w]
    conv = dict(kernel_shape=[k, k], pads=[pad] * 4)
    d2s = model([helper.make_node("Conv", ["x", "w", "b"], ["z"], **conv),
                 helper.make_node("DepthToSpace", ["z"], ["y"], blocksize=r, mode="CRD")],
                {"w": t.w_sp, "b": t.b_sp}, out)
    scales = torch.tensor([1.0, 1.0, r, r])
    resize = model([helper.make_node("Resize", ["x", "", "scales"], ["u"], mode="nearest",
                                     coordinate_transformation_mode="asymmetric",
                                     nearest_mode="floor"),
                    helper.make_node("Conv", ["u", "w", "b"], ["y"], **conv)],
                   {"scales": scales, "w": t.w_nn, "b": t.b_nn}, out)

    def conv_t(geo, inputs, inits):
        ph, pw = geo.symmetric_padding
        return model([helper.make_node("ConvTranspose", inputs, ["y"],
                                       kernel_shape=list(geo.kernel_size),
                                       strides=list(geo.stride), pads=[ph, pw, ph, pw])],
                     inits, out)

    ct_sp = conv_t(sp, ["x", "w"], {"w": t.wd_sp})
    ct_nn = conv_t(nn, ["x", "w", "b"], {"w": t.wd_nn, "b": t.b_nn})
    settle = dict(settle_s=ORT_SETTLE_S)
    return [
        Case("onnxruntime Conv+DepthToSpace", "SP", "baseline", d2s, t.w_sp.numel(), **settle),
        Case("onnxruntime ConvTranspose (D-SP weights)", "SP", "baseline", ct_sp,
             t.wd_sp.numel(), "periodic bias not added (favours the baseline)", "SP-nobias",
             **settle),
        Case("onnxruntime Resize+Conv", "NN", "baseline", resize, t.w_nn.numel(), **settle),
        Case("onnxruntime ConvTranspose (D-NN weights)", "NN", "baseline", ct_nn,
             t.wd_nn.numel(), **settle),
    ]
