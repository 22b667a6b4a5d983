"""The spandrel 0.4.2 model zoo as conversion cases: every upscaling architecture and
upsampler variant, as small seeded random instances, with what each path must find.

Import this module from any test (``import spandrel_zoo``): :data:`CASES` is the case list,
:func:`run_torch` / :func:`run_onnx` run one case through ``upconv.convert`` /
(``torch.onnx.export`` + ``upconv.convert_onnx``) and return an :class:`Outcome`.

Every case states, per path, how many sites convert and how many upsampling ops are left
alone, by reason (:data:`REASONS` maps a reason to a short key). A torch-path case is
**exact** when the conversion verifies, the converted model matches the original on another
input size, and nothing is left alone for a reason upconv could lift (``misses == 0``: no
:attr:`~upconv.convert.SkippedSite.limitation`). An ONNX case is exact when its export
succeeds, ``convert_onnx`` verifies, and it converts as many sites as the torch path.

Architectures whose spandrel 0.4.2 code cannot run on a CPU-only PyTorch are listed in
:data:`NOT_RUNNABLE` with the reason (not counted).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import upconv

#: upconv reports' reasons → short keys (the first key whose text occurs in the reason)
REASONS = {
    "only nearest reduces": "not nearest",
    "not a convolution": "no conv",
    "not a Conv": "no conv",
    "already a deconvolution": "deconvolution",
    "distributes over the sum": "sum before shuffle",
    "is random": "random op",
    "computed at run time": "runtime weights",
}


def reason_key(reason: str) -> str:
    for text, key in REASONS.items():
        if text in reason:
            return key
    return reason


@dataclass(frozen=True)
class Expect:
    """Sites one path must report: ``converted`` count, left-alone counts by reason key, and
    how many of those are misses (left alone by an upconv limitation)."""

    converted: int
    left_alone: dict[str, int] = field(default_factory=dict)
    misses: int = 0


@dataclass(frozen=True)
class OnnxFails:
    """The ONNX path stops: at ``stage`` ``"export"`` (``torch.onnx.export`` raises) or
    ``"convert"`` (``upconv.convert_onnx`` raises), with a message containing ``match``."""

    stage: str
    match: str


@dataclass(frozen=True)
class ZooCase:
    arch: str
    variant: str
    scale: int
    build: Callable[[], nn.Module]
    torch: Expect
    onnx: Expect | OnnxFails
    shape: tuple[int, ...] = (1, 3, 16, 16)
    other_shape: tuple[int, ...] = (1, 3, 20, 24)

    @property
    def id(self) -> str:
        return f"{self.arch}/{self.variant}/x{self.scale}"


@dataclass
class Outcome:
    """What a path did with a case (``error`` set when it raised instead)."""

    converted: int = 0
    left_alone: dict[str, int] = field(default_factory=dict)
    misses: int = 0
    verified: bool = False
    max_rel_error: float | None = None
    error: str | None = None
    report: object = None

    def as_expect(self) -> Expect:
        return Expect(self.converted, dict(self.left_alone), self.misses)


def _arch(name: str):
    return importlib.import_module(f"spandrel.architectures.{name}")


def build(case: ZooCase, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The case's model (eval mode, weights from ``seed``) and an input in [0, 1)."""
    torch.manual_seed(seed)
    model = case.build().eval()
    x = torch.rand(*case.shape, generator=torch.Generator().manual_seed(seed))
    return model, x


def _outcome(report) -> Outcome:
    keys = Counter(reason_key(s.reason) for s in report.skipped)
    return Outcome(len(report.converted), dict(keys),
                   sum(bool(getattr(s, "limitation", False)) for s in report.skipped),
                   report.verified, report.max_rel_error, None, report)


#: the deconvolution algorithm the zoo runs (PyTorch ops only: no kernel compilation)
ALGORITHM = "stdd"


def run_torch(case: ZooCase, model: nn.Module, x: torch.Tensor) -> tuple[Outcome, nn.Module]:
    """``upconv.convert(model, x)``; the outcome and the converted model."""
    converted, report = upconv.convert(model, x, algorithm=ALGORITHM)
    return _outcome(report), converted


def export(model: nn.Module, x: torch.Tensor):
    """``model`` as an ONNX ModelProto: ``torch.onnx.export`` (TorchScript, opset 17), static
    shapes, what a user exporting a model for inference would run."""
    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(copy.deepcopy(model), (x.clone(),), buf, dynamo=False,
                          opset_version=17, input_names=["x"])
    return onnx.load_from_string(buf.getvalue())


def run_onnx(case: ZooCase, model: nn.Module, x: torch.Tensor) -> Outcome:
    """Export, then ``upconv.convert_onnx`` (verified in ONNX Runtime on the case's shape)."""
    try:
        proto = export(model, x)
    except Exception as err:  # the exporter raises many kinds
        return Outcome(error=f"export: {type(err).__name__}: {err}".splitlines()[0])
    try:
        _, report = upconv.convert_onnx(proto)
    except Exception as err:
        return Outcome(error=f"convert_onnx: {type(err).__name__}: {err}".splitlines()[0])
    return _outcome(report)


class _UpsamplingCounter(TorchDispatchMode):
    """Counts the ATen ops a report must account for: pixel shuffles, resizes, transposed
    convolutions. Independent of upconv's own recorder (the test's oracle)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        transposed = func is torch.ops.aten.convolution.default and bool(args[6])
        if name == "pixel_shuffle" or name.lstrip("_").startswith("upsample") or transposed:
            self.count += 1
        return func(*args, **(kwargs or {}))


def run_counting(model: nn.Module, x: torch.Tensor, seed: int = 0) -> tuple[object, int]:
    """``model(x.clone())`` from RNG ``seed``, and how many upsampling ops it ran."""
    counter = _UpsamplingCounter()
    with torch.random.fork_rng(), torch.no_grad(), counter:
        torch.manual_seed(seed)
        out = model(x.clone())
    return out, counter.count


def first_tensor(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def torch_exact(case: ZooCase) -> bool:
    return case.torch.misses == 0


def onnx_exact(case: ZooCase) -> bool | None:
    """None when the ONNX path does not get to convert (export fails)."""
    if isinstance(case.onnx, OnnxFails):
        return None if case.onnx.stage == "export" else False
    return case.onnx.converted >= case.torch.converted + case.torch.misses


def summary() -> str:
    """The zoo table (architecture, variant, scale, torch result, ONNX result) and totals."""
    rows, t_ok, o_ok, o_n = [], 0, 0, 0
    for c in CASES:
        t = f"{c.torch.converted} converted" + (
            f", left alone {c.torch.left_alone}" if c.torch.left_alone else "")
        if isinstance(c.onnx, OnnxFails):
            o = f"{c.onnx.stage} fails ({c.onnx.match})"
        else:
            o = f"{c.onnx.converted} converted" + (
                f", left alone {c.onnx.left_alone}" if c.onnx.left_alone else "")
        t_ok += torch_exact(c)
        exact = onnx_exact(c)
        if exact is not None:
            o_n += 1
            o_ok += exact
        rows.append(f"| {c.arch} | {c.variant} | x{c.scale} | "
                    f"{'exact' if torch_exact(c) else 'miss'}: {t} | "
                    f"{'-' if exact is None else 'exact' if exact else 'miss'}: {o} |")
    head = ["| architecture | variant | scale | torch path | ONNX path |",
            "|---|---|---|---|---|"]
    tail = [f"torch: {t_ok}/{len(CASES)} exact ({100 * t_ok / len(CASES):.1f} %); "
            f"ONNX: {o_ok}/{o_n} exact ({100 * o_ok / max(o_n, 1):.1f} %) of the cases whose "
            f"export succeeds ({len(CASES) - o_n} exports fail)"]
    return "\n".join(head + rows + tail)


# --- the cases ----------------------------------------------------------------------------


def _swin(module: str, cls: str, **kw: object) -> Callable[[], nn.Module]:
    base = dict(embed_dim=12, depths=[1], num_heads=[2], window_size=4, mlp_ratio=1.0,
                img_size=16)
    return lambda: getattr(_arch(module), cls)(**{**base, **kw})


E = Expect


def _c(arch: str, variant: str, scale: int, build: Callable[[], nn.Module], torch_: Expect,
       onnx: Expect | OnnxFails, **kw: tuple[int, ...]) -> ZooCase:
    return ZooCase(arch, variant, scale, build, torch_, onnx, **kw)


def _m(arch: str, cls: str | None = None, **kw: object) -> Callable[[], nn.Module]:
    return lambda: getattr(_arch(arch), cls or arch)(**kw)


_ATD = dict(embed_dim=12, depths=(1,), num_heads=(2,), window_size=4, category_size=16,
            num_tokens=8, reducted_dim=4, mlp_ratio=1.0, img_size=16)
_GRL = dict(embed_dim=16, depths=[1], num_heads_window=[1], num_heads_stripe=[1],
            window_size=4, stripe_size=[4, 4], mlp_ratio=1.0, img_size=16,
            anchor_window_down_factor=1)
_DAT = dict(embed_dim=32, depth=[1], num_heads=[2], split_size=[2, 4], expansion_factor=1.0,
            img_size=16)
_HAT = dict(embed_dim=12, depths=(1,), num_heads=(2,), window_size=4, compress_ratio=3,
            squeeze_factor=4, mlp_ratio=1.0, img_size=16, num_feat=8)
_DRCT = dict(embed_dim=12, depths=(1,), num_heads=(2,), window_size=4, mlp_ratio=1.0,
             img_size=16, gc=8)
_RGT = dict(embed_dim=32, depth=[1], num_heads=[2], split_size=[4, 4], mlp_ratio=1.0,
            img_size=16)
_CRAFT = dict(embed_dim=32, depths=[1], num_heads=[2], window_size=4, split_size_0=2,
              split_size_1=4, mlp_ratio=1.0)
_RCAN = dict(n_resgroups=1, n_resblocks=1, n_feats=8, reduction=4)
_ESRGAN = dict(num_filters=8, num_blocks=1)
_MoESR = dict(dim=16, n_blocks=1, n_block=1, upsample_dim=8)
_FDAT = dict(embed_dim=16, num_groups=1, depth_per_group=1, num_heads=2, window_size=4,
             mid_dim=8)
_AURA = dict(dim=8, init_dim=8, image_size=None, input_image_size=None,
             style_network={"dim_in": 8, "dim_out": 16, "depth": 1},
             up_dim_mults=(1, 2), down_dim_mults=(), attn_depths=(1,) * 5,
             mid_attn_depth=1, self_attn_dim_head=8, self_attn_heads=1, full_attn=(False,) * 5,
             resnet_block_groups=2, skip_connect_scale=0.4)


#: spandrel 0.4.2's architectures whose models upscale (each has cases below)
ARCHITECTURES = ("ATD", "AuraSR", "CRAFT", "Compact", "DAT", "DCTLSA", "DITN", "DRCT", "ESRGAN",
                 "FDAT", "GRL", "HAT", "IPT", "MMRealSR", "MoESR", "MoSR", "OmniSR", "PLKSR",
                 "RCAN", "RGT", "RealCUGAN", "SAFMN", "SAFMNBCIE", "SPAN", "SeemoRe",
                 "SwiftSRGAN", "Swin2SR", "SwinIR")
#: and those whose models do not (restoration at 1x, face restoration, inpainting, ...)
NOT_UPSCALING = ("DRUNet", "DnCNN", "FBCNN", "FFTformer", "GFPGAN", "HVICIDNet", "KBNet",
                 "LaMa", "MixDehazeNet", "NAFNet", "RestoreFormer", "RetinexFormer", "SCUNet",
                 "Uformer")

#: spandrel 0.4.2 upsampler variants that do not run on a CPU-only PyTorch (not counted)
NOT_RUNNABLE = {
    "FDAT/dysample": "its DySample builds a tensor with pin_memory=True, which needs an "
                     "accelerator",
    "MMRealSR/x2": "scale 2 sizes the degradation net for the pixel-unshuffled input but feeds "
                   "it the raw one (spandrel's own tests only load it)",
}


def not_runnable(key: str) -> tuple[nn.Module, torch.Tensor]:
    """The model and input of a :data:`NOT_RUNNABLE` variant (its forward raises)."""
    if key == "FDAT/dysample":
        model = _m("FDAT", scale=2, upsampler_type="dysample", **_FDAT)()
    else:
        model = _m("MMRealSR", num_in_ch=3, num_out_ch=3, scale=2, num_feat=8, num_block=1,
                   num_grow_ch=4, num_feats=[8, 8], num_blocks=[1, 1], downscales=[2, 1])()
    return model.eval(), torch.rand(1, 3, 16, 16)


N, C, D, S = "not nearest", "no conv", "deconvolution", "sum before shuffle"
SORT = OnnxFails("export", "operator Sort")  # torch.onnx cannot export ATD's sort(out=)
COL2IM = OnnxFails("export", "col2im")  # IPT's F.fold has no ONNX op at opset 17

CASES: tuple[ZooCase, ...] = (
    *(_c("SwinIR", up, s, _swin("SwinIR", "SwinIR", upscale=s, upsampler=up), t, o)
      for up, s, t, o in [("pixelshuffle", 2, E(1), E(1)), ("pixelshuffle", 3, E(1), E(1)),
                          ("pixelshuffle", 4, E(2), E(2)),
                          ("pixelshuffledirect", 2, E(1), E(1)),
                          ("pixelshuffledirect", 4, E(1), E(1)),
                          ("nearest+conv", 4, E(2), E(2)), ("nearest+conv", 8, E(3), E(3))]),
    *(_c("Swin2SR", up, s, _swin("Swin2SR", "Swin2SR", upscale=s, upsampler=up), t, o)
      for up, s, t, o in [("pixelshuffle", 2, E(1), E(1)), ("pixelshuffle", 4, E(2), E(2)),
                          ("pixelshuffledirect", 3, E(1), E(1)),
                          ("nearest+conv", 4, E(2), E(2)),
                          ("pixelshuffle_aux", 2, E(1, {N: 1}), E(1, {N: 1})),
                          ("pixelshuffle_hf", 2, E(2), E(2))]),
    *(_c("ATD", up, s, _m("ATD", upscale=s, upsampler=up, **_ATD), t, SORT)
      for up, s, t in [("pixelshuffle", 2, E(1)), ("pixelshuffle", 3, E(1)),
                       ("pixelshuffledirect", 4, E(1)), ("nearest+conv", 4, E(2))]),
    *(_c("GRL", up, s, _m("GRL", upscale=s, upsampler=up, **_GRL), t, t)
      for up, s, t in [("pixelshuffle", 2, E(1)), ("pixelshuffle", 3, E(1)),
                       ("pixelshuffledirect", 4, E(1)), ("nearest+conv", 4, E(2))]),
    # ONNX: DAT's channel attention (1x1 conv of pooled features, then a permute of its channels
    # onto the width) is a (1, C) depth-to-space of a conv too, and converts exactly
    *(_c("DAT", up, s, _m("DAT", upscale=s, upsampler=up, **_DAT), t, E(t.converted + 1))
      for up, s, t in [("pixelshuffle", 2, E(1)), ("pixelshuffle", 4, E(2)),
                       ("pixelshuffledirect", 3, E(1))]),
    *(_c("HAT", "pixelshuffle", s, _m("HAT", upscale=s, **_HAT), t, t)
      for s, t in [(2, E(1)), (3, E(1)), (4, E(2))]),
    *(_c("DRCT", "pixelshuffle", s, _m("DRCT", upscale=s, upsampler="pixelshuffle", **_DRCT),
         t, t) for s, t in [(2, E(1)), (4, E(2))]),
    *(_c("RGT", "pixelshuffle", s, _m("RGT", upscale=s, **_RGT), E(1), E(1))
      for s in (2, 3)),
    *(_c("CRAFT", "pixelshuffledirect", s, _m("CRAFT", upscale=s, **_CRAFT), E(1), E(1))
      for s in (2, 4)),
    *(_c("RCAN", "pixelshuffle", s, _m("RCAN", scale=s, **_RCAN), t, t)
      for s, t in [(2, E(1)), (3, E(1)), (4, E(2))]),
    _c("RCAN", "unshuffle_mod", 2, _m("RCAN", scale=2, unshuffle_mod=True, **_RCAN), E(2), E(2)),
    *(_c("ESRGAN", up, s, _m("ESRGAN", scale=s, upsampler=up, **_ESRGAN), t, t)
      for up, s, t in [("upconv", 2, E(1)), ("upconv", 3, E(1)), ("upconv", 4, E(2)),
                       ("pixel_shuffle", 2, E(1)), ("pixel_shuffle", 4, E(2))]),
    _c("ESRGAN", "upconv+shuffle_factor", 2,
       _m("ESRGAN", scale=4, shuffle_factor=2, in_nc=12, **_ESRGAN), E(2), E(2)),
    _c("ESRGAN", "plus", 4, _m("ESRGAN", scale=4, plus=True, **_ESRGAN), E(2), E(2)),
    *(_c("Compact", act, s, _m("Compact", upscale=s, act_type=act, num_feat=8, num_conv=2),
         E(1, {C: 1}), E(1, {C: 1})) for act, s in [("prelu", 4), ("relu", 2), ("leakyrelu", 3)]),
    *(_c("SPAN", "pixelshuffle", s, _m("SPAN", num_in_ch=3, num_out_ch=3, upscale=s,
                                          feature_channels=8), E(1), E(1)) for s in (2, 4)),
    *(_c("OmniSR", "pixelshuffle", s, _m("OmniSR", up_scale=s, num_feat=16, window_size=4,
                                            res_num=1, block_num=1), E(1, {N: 1}), E(1, {N: 1}))
      for s in (2, 3)),
    _c("DCTLSA", "pixelshuffle", 4, _m("DCTLSA", upscale=4, nf=10, num_head=2), E(1), E(1)),
    *(_c("DITN", "pixelshuffledirect", s, _m("DITN", upscale=s, dim=8, ITL_blocks=1,
                                                SAL_blocks=1, patch_size=8), E(1), E(1),
         other_shape=(1, 3, 24, 32)) for s in (2, 4)),
    *(_c("IPT", "pixelshuffle", s, _m("IPT", scale=[s], patch_size=8, patch_dim=2, n_feats=8,
                                         num_heads=2, num_layers=1), t, COL2IM,
         shape=(1, 3, 8, 8), other_shape=(2, 3, 8, 8))
      for s, t in [(2, E(1)), (3, E(1)), (4, E(2))]),
    _c("MMRealSR", "nearest+conv", 4,
       _m("MMRealSR", num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1,
          num_grow_ch=4, num_feats=[8, 8], num_blocks=[1, 1], downscales=[2, 1]), E(2), E(2)),
    *(_c("MoESR", up, s, _m("MoESR", scale=s, upsampler=up, **_MoESR), t, o)
      for up, s, t, o in [("pixelshuffledirect", 2, E(2), E(2)),
                          ("pixelshuffledirect", 4, E(2), E(2)),
                          ("pixelshuffle", 3, E(2), E(2)), ("pixelshuffle", 4, E(3), E(3)),
                          ("nearest+conv", 2, E(2), E(2)),
                          ("nearest+conv", 3, E(2), E(2)),
                          ("dysample", 2, E(1, {C: 1}), E(1, {C: 1}))]),
    *(_c("MoSR", up, s, _m("MoSR", upscale=s, upsampler=up, n_block=1, dim=16), t, o)
      for up, s, t, o in [("ps", 2, E(1), E(1)), ("ps", 4, E(1), E(1)),
                          ("gps", 4, E(1), E(0, {C: 1})),
                          ("dys", 2, E(0, {C: 1}), E(0, {C: 1}))]),
    *(_c("FDAT", up, s, _m("FDAT", scale=s, upsampler_type=up, **_FDAT), t, o)
      for up, s, t, o in [("pixelshuffledirect", 2, E(1), E(1)),
                          ("pixelshuffledirect", 4, E(1), E(1)),
                          ("pixelshuffle", 3, E(1), E(1)),
                          ("pixelshuffle", 4, E(2), E(2)),
                          ("nearest+conv", 2, E(1), E(1)),
                          ("nearest+conv", 3, E(1), E(1)),
                          ("transpose+conv", 2, E(0, {D: 1}), E(0)),
                          ("transpose+conv", 4, E(0, {D: 2}), E(0)),
                          ("lda", 2, E(0, {N: 1}), E(0, {N: 1})),
                          ("pa_up", 2, E(1), E(1)), ("pa_up", 3, E(1), E(1))]),
    *(_c("PLKSR", "PLKSR", s, _m("PLKSR", dim=8, n_blocks=1, upscaling_factor=s,
                                    kernel_size=5), E(0, {S: 1}, misses=1), E(1))
      for s in (2, 4)),
    _c("PLKSR", "RealPLKSR", 4, _m("PLKSR", "RealPLKSR", dim=8, n_blocks=1, upscaling_factor=4,
                                   kernel_size=5, norm_groups=2),
       E(0, {S: 1}, misses=1), E(1)),
    _c("PLKSR", "RealPLKSR-dysample", 2,
       _m("PLKSR", "RealPLKSR", dim=8, n_blocks=1, upscaling_factor=2, kernel_size=5,
          norm_groups=2, dysample=True), E(0, {C: 1}), E(0, {C: 1})),
    *(_c("SAFMN", "pixelshuffle", s, _m("SAFMN", dim=8, n_blocks=1, upscaling_factor=s),
         E(1, {C: 3}), E(1, {C: 3})) for s in (2, 4)),
    _c("SAFMNBCIE", "pixelshuffle", 2,
       _m("SAFMNBCIE", dim=8, n_blocks=1, num_layers=1, upscaling_factor=2),
       E(1, {C: 3}), E(1, {C: 3}), other_shape=(1, 3, 32, 48)),
    *(_c("SeemoRe", "pixelshuffle", s, _m("SeemoRe", scale=s, num_experts=2, num_layers=1,
                                             embedding_dim=8, global_kernel_size=5,
                                             recursive=1), E(1, {N: 1}), E(1, {N: 1}))
      for s in (2, 4)),
    *(_c("SwiftSRGAN", "pixelshuffle", s, _m("SwiftSRGAN", upscale_factor=s, num_channels=8,
                                                num_blocks=1), t, t)
      for s, t in [(2, E(1)), (4, E(2))]),
    _c("RealCUGAN", "UpCunet2x", 2, _m("RealCUGAN", "UpCunet2x"), E(0, {D: 4}), E(0),
       shape=(1, 3, 20, 20), other_shape=(1, 3, 22, 26)),
    _c("RealCUGAN", "UpCunet3x", 3, _m("RealCUGAN", "UpCunet3x"), E(0, {D: 4}), E(0),
       other_shape=(1, 3, 20, 24)),
    _c("RealCUGAN", "UpCunet4x", 4, _m("RealCUGAN", "UpCunet4x"), E(1, {D: 4, C: 1}),
       E(1, {C: 1}),
       shape=(1, 3, 20, 20), other_shape=(1, 3, 22, 26)),
    _c("RealCUGAN", "UpCunet2x_fast", 2, _m("RealCUGAN", "UpCunet2x_fast"),
       E(1, {D: 4, C: 1}), E(1, {C: 1}), shape=(1, 3, 40, 40), other_shape=(1, 3, 44, 48)),
    _c("AuraSR", "nearest+conv", 4, _m("AuraSR", **_AURA), E(2), E(2),
       other_shape=(1, 3, 24, 32)),
)
