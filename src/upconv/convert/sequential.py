"""Fallback rewrite for models torch.fx cannot trace: adjacent ``nn.Sequential`` children.

Inside an ``nn.Sequential`` each child feeds only the next, so ``Conv2d, PixelShuffle`` and
``Upsample(nearest), Conv2d`` pairs are sites without any graph. The pair becomes
``Deconv2d, Identity`` (or ``Identity, Deconv2d``) so other children keep their indices and
``state_dict`` keys. upconv's own layers are converted wherever they sit.
"""

from __future__ import annotations

from torch import nn

from ..shapes import scale_pair
from .conv_params import ConvParams, Unsupported
from .deconv_factory import bias_kind, resize_deconv, subpixel_deconv
from .fx_layers import convert_upconv_layer
from .fx_resize import NEAREST_MODES
from .report import ConversionReport, ConvertedSite


def _params(conv: nn.Conv2d) -> ConvParams:
    return ConvParams(conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                      conv.groups, conv.padding_mode)


def _set(parent: nn.Module, name: str, module: nn.Module) -> None:
    setattr(parent, name, module)


def _pair_site(seq: nn.Sequential, prefix: str, i: int, names: list[str], algorithm: str,
               report: ConversionReport) -> bool | None:
    """Try children ``i, i+1``: True if converted, False if a candidate left alone (reported),
    None if the pair is no candidate."""
    (na, a), (nb, b) = (names[i], seq[i]), (names[i + 1], seq[i + 1])
    where = f"{prefix}{na} → {prefix}{nb}"
    if isinstance(a, nn.Conv2d) and isinstance(b, nn.PixelShuffle):
        kind, conv, r = "sub-pixel", a, (b.upscale_factor, b.upscale_factor)
        build, slot, other = subpixel_deconv, na, nb
    elif isinstance(a, nn.Upsample) and isinstance(b, nn.Conv2d):
        kind, conv, slot, other, build = "resize", b, nb, na, resize_deconv
        if a.mode not in NEAREST_MODES:
            report.skip(where, kind, f"{a.mode} resize (only nearest reduces to a deconvolution)")
            return False
        if a.scale_factor is None:
            report.skip(where, kind, "size= resize: the Sequential fallback needs a scale_factor")
            return False
        try:
            r = scale_pair(a.scale_factor, "scale_factor")
        except (TypeError, ValueError):
            report.skip(where, kind, f"non-integer scale {a.scale_factor!r}")
            return False
    else:
        return None
    try:
        deconv = build(_params(conv), r, algorithm)
    except Unsupported as why:
        report.skip(where, kind, str(why))
        return False
    _set(seq, slot, deconv)
    _set(seq, other, nn.Identity())
    report.add_converted(ConvertedSite(f"{prefix}{slot}", kind, r, _params(conv).kernel_size,
                                       deconv.kernel_size, algorithm, bias_kind(deconv), where))
    return True


def rewrite_sequentials(model: nn.Module, algorithm: str, report: ConversionReport) -> None:
    """Convert, in place in ``model`` (a copy), every adjacent-children site and upconv layer."""
    for path, module in list(model.named_modules()):
        parent_path, _, name = path.rpartition(".")
        deconv = convert_upconv_layer(module, path, algorithm, report) if path else None
        if deconv is not None:
            _set(model.get_submodule(parent_path), name, deconv)
    handled: set[int] = set()
    for path, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        prefix = f"{path}." if path else ""
        names = [n for n, _ in seq.named_children()]
        i = 0
        while i < len(names) - 1:
            before = (seq[i], seq[i + 1])
            outcome = _pair_site(seq, prefix, i, names, algorithm, report)
            if outcome is not None:
                handled.update(map(id, before))
            i += 2 if outcome else 1
        for name, m in seq.named_children():
            if isinstance(m, (nn.PixelShuffle, nn.Upsample)) and id(m) not in handled:
                handled.add(id(m))
                report.skip(f"{prefix}{name}", _kind(m), "no adjacent conv in its nn.Sequential")
    for path, module in model.named_modules():
        if isinstance(module, (nn.PixelShuffle, nn.Upsample)) and id(module) not in handled:
            report.skip(path, _kind(module), "outside an nn.Sequential: without an fx graph its "
                        "producer/consumer is unknown")


def _kind(m: nn.Module) -> str:
    return "sub-pixel" if isinstance(m, nn.PixelShuffle) else "resize"
