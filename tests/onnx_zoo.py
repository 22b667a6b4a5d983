"""Tiny spandrel architectures for the ONNX conversion tests: one case per ONNX pattern.

Each case: ``(builder, input shape, opset, expected)``: ``expected`` maps ``"sub-pixel"``
/ ``"resize"`` to the sites that must convert and ``"left alone"`` to the reasons (substrings)
of the candidates that must be reported untouched. Exported by the TorchScript exporter
(``dynamo=False``, fast) with dynamic N/H/W; the full zoo with its torch-side counts is the
zoo-torch harness's (``tests/spandrel_zoo.py``).
"""

from __future__ import annotations

import importlib


def arch(name: str, module: str, cls: str):
    """``spandrel.architectures.<name>.__arch.<module>.<cls>`` (spandrel is a test extra)."""
    return getattr(importlib.import_module(f"spandrel.architectures.{name}.__arch.{module}"), cls)


CASES = {
    # opset 9: Upsample, and the sub-pixel conv → PReLU → pixel shuffle chain; the base
    # nearest upsampling of the input is added to the output, so it is no resize conv
    "Compact-prelu-x4@9": (
        lambda: arch("Compact", "SRVGG", "SRVGGNetCompact")(num_feat=8, num_conv=2, upscale=4),
        (1, 3, 12, 10), 9, {"sub-pixel": 1, "left alone": ["it is Add"]}),
    # opset 9: ESRGAN's nearest ×2 ×2 upsampler as two Upsample ops, LeakyReLU after the convs
    "ESRGAN-x4@9": (
        lambda: arch("ESRGAN", "RRDB", "RRDBNet")(num_filters=8, num_blocks=1, scale=4),
        (1, 3, 12, 10), 9, {"resize": 2}),
    # opset 9: pixel shuffle ×2 ×2 as two Reshape → Transpose → Reshape chains
    "ESRGAN-pixel_shuffle-x4@9": (
        lambda: arch("ESRGAN", "RRDB", "RRDBNet")(num_filters=8, num_blocks=1, scale=4,
                                                  upsampler="pixel_shuffle"),
        (1, 3, 12, 10), 9, {"sub-pixel": 2}),
    # FDAT nearest+conv: conv → Resize → LeakyReLU → conv (the activation moves before the
    # resize); its zero biases are deduplicated through Identity by the exporter
    "FDAT-nearest+conv-x2@17": (
        lambda: arch("FDAT", "fdat", "FDAT")(embed_dim=16, num_groups=1, depth_per_group=1,
                                             num_heads=2, window_size=4, mid_dim=8, scale=2,
                                             upsampler_type="nearest+conv"),
        (1, 3, 16, 16), 17, {"resize": 1, "export has": "Identity"}),
    # MoESR nearest+conv: a sub-pixel conv in the body, resize → LeakyReLU → conv at the end
    "MoESR-nearest+conv-x2@11": (
        lambda: arch("MoESR", "MoESR", "MoESR")(dim=8, n_blocks=1, n_block=1, scale=2,
                                                upsampler="nearest+conv", upsample_dim=8),
        (1, 3, 16, 16), 11, {"sub-pixel": 1, "resize": 1}),
    # RealCUGAN 4x: an integer ``alpha`` input; valid conv → crop F.pad(-1) → pixel shuffle
    "RealCUGAN-4x@17": (
        lambda: arch("RealCUGAN", "upcunet_v3", "UpCunet4x")(),
        (1, 3, 40, 40), 17, {"sub-pixel": 1, "left alone": ["it is Add"]}),
    # PLKSR: pixel_shuffle(feats(x) + repeat_interleave(x)): the shuffle distributes
    "PLKSR-x2@17": (
        lambda: arch("PLKSR", "PLKSR", "PLKSR")(dim=8, n_blocks=1, upscaling_factor=2,
                                                kernel_size=5),
        (1, 3, 16, 16), 17, {"sub-pixel": 1}),
    # MoSR gps at opset 9: a reshape-chain shuffle of a channel mean: reported, not converted
    "MoSR-gps-x2@9": (
        lambda: arch("MoSR", "mosr_arch", "MoSR")(dim=8, n_block=1, upscale=2, upsampler="gps"),
        (1, 3, 16, 16), 9, {"left alone": ["it is ReduceMean"]}),
    # MoSR DySample: a pixel shuffle of sampling offsets, deep inside a reshape run
    "MoSR-dys-x2@17": (
        lambda: arch("MoSR", "mosr_arch", "MoSR")(dim=8, n_block=1, upscale=2, upsampler="dys"),
        (1, 3, 16, 16), 17, {"left alone": ["its input is not a Conv (it is Reshape)"]}),
    # SwinIR nearest+conv: Resize → conv → LeakyReLU → Resize → conv
    "SwinIR-nearest+conv-x4@11": (
        lambda: arch("SwinIR", "SwinIR", "SwinIR")(embed_dim=12, depths=[1], num_heads=[1],
                                                   window_size=4, upscale=4, img_size=16,
                                                   upsampler="nearest+conv"),
        (1, 3, 16, 16), 11, {"resize": 2}),
}
