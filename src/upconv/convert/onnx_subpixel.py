"""ONNX rewrite: ``Conv → DepthToSpace`` (CRD or DCR, biased or not) ⇒ ``ConvTranspose``.

A DCR shuffle reads the conv's channels in block-major order; permuting the conv's output
channels to CRD (PyTorch's pixel-shuffle order) first lets one weight shuffle serve both.
A bias whose ``r²`` shuffled values agree per channel stays a ``ConvTranspose`` bias; any other
becomes a periodic bias added after it (see :func:`conv_transpose_nodes`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .conv_params import ConvParams, Unsupported
from .deconv_factory import subpixel_deconv
from .onnx_graph import GraphEditor, attributes, conv_transpose_nodes, node_label
from .report import ConversionReport, ConvertedSite

KIND = "sub-pixel"
ALGORITHM = "ConvTranspose"


def dcr_to_crd(t: torch.Tensor, r: int) -> torch.Tensor:
    """Reorder dim 0 of a conv weight / bias: DCR ``(a·r + b)·C + c`` → CRD ``c·r² + a·r + b``."""
    c = t.shape[0] // (r * r)
    return t.reshape(r * r, c, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def _plain_if_uniform(bias: np.ndarray) -> np.ndarray:
    """A periodic ``(C, r, r)`` bias as ``(C,)`` when every period holds one value."""
    flat = bias.reshape(bias.shape[0], -1)
    return flat[:, 0].copy() if np.all(flat == flat[:, :1]) else bias


def rewrite_subpixel(editor: GraphEditor, report: ConversionReport) -> None:
    """Queue a rewrite of every ``DepthToSpace`` fed by a convertible ``Conv``; report the rest."""
    for d2s in editor.graph.node:
        if d2s.op_type != "DepthToSpace" or d2s.domain not in ("", "ai.onnx"):
            continue
        where = node_label(d2s)
        a = attributes(d2s)
        r, mode = int(a["blocksize"]), a.get("mode", "DCR")
        conv = editor.producer.get(d2s.input[0])
        try:
            if conv is None or conv.op_type != "Conv":
                what = "a graph input" if conv is None else conv.op_type
                raise Unsupported(f"its input is not a Conv (it is {what})")
            where = f"{node_label(conv)} → {where}"
            if editor.is_removed(conv):
                raise Unsupported("the Conv is already part of another converted site")
            editor.only_consumer(conv.output[0])
            params = editor.conv_params(conv)
            if params.weight.shape[0] % (r * r):
                raise Unsupported(f"{params.weight.shape[0]} channels not divisible by {r}²")
            if mode == "DCR":
                params = dataclasses.replace(
                    params, weight=dcr_to_crd(params.weight, r),
                    bias=None if params.bias is None else dcr_to_crd(params.bias, r))
            deconv = subpixel_deconv(params, (r, r), "auto")
        except Unsupported as why:
            report.skip(where, KIND, str(why))
            continue
        _queue(editor, conv, d2s, deconv, params, r, mode, where, report)


def _queue(editor, conv, d2s, deconv, params: ConvParams, r, mode, where, report) -> None:
    bias = None if deconv.bias is None else _plain_if_uniform(deconv.bias.detach().numpy())
    label = conv.name or conv.output[0]
    nodes = conv_transpose_nodes(editor, conv.input[0], d2s.output[0],
                                 deconv.weight.detach().numpy(), bias, deconv.stride,
                                 deconv.padding, label)
    editor.replace([conv, d2s], nodes)
    kind = "none" if bias is None else ("periodic" if bias.ndim == 3 else "per-channel")
    report.add_converted(ConvertedSite(nodes[0].name, KIND, (r, r), params.kernel_size,
                                       deconv.kernel_size, ALGORITHM, kind,
                                       f"{where} ({mode})"))
