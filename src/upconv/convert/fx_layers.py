"""torch.fx rewrite: upconv's own trained layers (``SubPixelConv2d``, ``ResizeConv2d``) ⇒
their ``.to_deconv()``; native deconvolutions are reported and left as they are."""

from __future__ import annotations

from torch import fx, nn

from ..layers import Deconv2d, ResizeConv2d, SubPixelConv2d
from .deconv_factory import bias_kind
from .fx_nodes import call_count, module_of, set_submodule
from .report import ConversionReport, ConvertedSite

NATIVE_DECONV_REASON = "already a deconvolution (native transposed convolution): left as is"
NATIVE_DECONVS = (nn.ConvTranspose2d, Deconv2d)


def convert_upconv_layer(
    layer: nn.Module, path: str, algorithm: str, report: ConversionReport
) -> Deconv2d | None:
    """``layer.to_deconv(algorithm)`` for an upconv layer (reported), else None."""
    if isinstance(layer, NATIVE_DECONVS):
        report.skip(path, type(layer).__name__, NATIVE_DECONV_REASON)
        return None
    if not isinstance(layer, (SubPixelConv2d, ResizeConv2d)):
        return None
    kind = "sub-pixel" if isinstance(layer, SubPixelConv2d) else "resize"
    deconv = layer.to_deconv(algorithm)
    report.add_converted(ConvertedSite(path, kind, layer.scale, layer.kernel_size,
                                       deconv.kernel_size, algorithm, bias_kind(deconv),
                                       type(layer).__name__))
    return deconv


def rewrite_upconv_layers(gm: fx.GraphModule, algorithm: str, report: ConversionReport) -> None:
    """Swap every called upconv layer for its deconvolution, in place in ``gm``."""
    seen: set[str] = set()
    for node in list(gm.graph.nodes):
        layer = module_of(gm, node)
        if layer is None or node.target in seen:
            continue
        seen.add(str(node.target))
        if call_count(gm, node.target) != 1 and isinstance(layer, (SubPixelConv2d, ResizeConv2d)):
            report.skip(str(node.target), type(layer).__name__,
                        "the layer is called at more than one place")
            continue
        deconv = convert_upconv_layer(layer, str(node.target), algorithm, report)
        if deconv is not None:
            set_submodule(gm, str(node.target), deconv)
