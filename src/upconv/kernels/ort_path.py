"""ONNX Runtime's ``ConvTranspose`` as a deconvolution: the baseline ``auto`` must not lose to.

:func:`deconv2d_convtranspose_ort` builds a one-node ONNX model per weight (weight as an
initializer, so ONNX Runtime packs it once), geometry and thread count, caches the session with
:func:`~upconv.kernels.weight_cache.derived` and runs it. Input ``N``, ``H`` and ``W`` are
dynamic, so one session serves every input size. A per-channel bias is the node's ``B`` input,
fed on every call (a new bias needs no new session); a periodic bias is added afterwards in
PyTorch. Float32 CPU inference only: check :func:`unsupported_reason` first.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from ..algorithms._common import add_bias
from ..shapes import IntPair, Pad4
from .revd2 import unsupported_reason as _kernel_unsupported_reason
from .weight_cache import derived


@functools.cache
def ort_import_error() -> str | None:
    """Why ``onnxruntime`` (or ``onnx``, used to build the model) cannot be used, or None."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except Exception as err:  # broken installs raise more than ImportError
        return f"onnxruntime is unavailable ({type(err).__name__}: {err})"
    return None


def unsupported_reason(x: Tensor, weight: Tensor, bias: Tensor | None) -> str | None:
    """Why ONNX Runtime cannot run this call (float32 CPU inference only), or None."""
    return _kernel_unsupported_reason(x, weight, bias) or ort_import_error()


def build_session(weight: np.ndarray, stride: IntPair, padding: Pad4,
                  output_padding: IntPair, with_bias: bool, threads: int):
    """An ``InferenceSession`` of ``y = ConvTranspose(x, w[, b])``, ``w = weight (Cin, C, Kh, Kw)``.

    Inputs ``x (N, Cin, H, W)`` (N, H, W dynamic) and, if ``with_bias``, ``b (C,)``.
    Runs on ``threads`` intra-op threads that sleep rather than spin when idle.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    cin, c, kh, kw = weight.shape
    top, bottom, left, right = padding
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"] if with_bias else ["x", "w"], ["y"],
        kernel_shape=[kh, kw], strides=list(stride), pads=[top, left, bottom, right],
        output_padding=list(output_padding))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, "H", "W"])]
    if with_bias:
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [c]))
    graph = helper.make_graph(
        [node], "upconv_deconv", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, "OH", "OW"])],
        [numpy_helper.from_array(np.ascontiguousarray(weight, np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    # idle pool threads would otherwise spin and steal cores from PyTorch / numba running next
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def deconv2d_convtranspose_ort(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """ONNX Runtime ``ConvTranspose``: ``x (N, Cin, H, W)`` → ``(N, C, *out_size)``, float32.

    Same contract as :func:`upconv.deconv2d`'s implementations; the result has no autograd
    history (inference only).
    """
    reason = unsupported_reason(x, weight, bias)
    if reason is not None:
        raise ValueError(f"ONNX Runtime ConvTranspose cannot run this call: {reason}")
    n, c = x.shape[0], weight.shape[1]
    if n == 0:
        return torch.zeros((0, c, *out_size), dtype=torch.float32)
    per_channel = bias is not None and bias.ndim == 1
    threads = torch.get_num_threads()
    key = ("convtranspose-ort", tuple(stride), tuple(padding), tuple(output_padding),
           per_channel, str(weight.dtype), threads)

    def make():
        return build_session(weight.detach().numpy(), stride, padding, output_padding,
                             per_channel, threads)

    session = derived(weight, key, make)
    feeds = {"x": x.detach().contiguous().numpy()}
    if per_channel:
        feeds["b"] = bias.detach().contiguous().numpy()
    y = torch.from_numpy(session.run(None, feeds)[0])
    if tuple(y.shape) != (n, c, *out_size):
        raise RuntimeError(f"ONNX Runtime ConvTranspose produced {tuple(y.shape)}, expected "
                           f"{(n, c, *out_size)} (stride {stride}, crops {padding}, "
                           f"output padding {output_padding})")
    return y if per_channel or bias is None else add_bias(y, bias.detach())
