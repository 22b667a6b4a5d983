"""What a network sees: luma (1 input channel) or RGB (3 input channels).

ESPCN (and the bundled models) take the Y channel; most checkpoints in the wild (spandrel's
zoo) take RGB. :func:`colour_plan` tells the two apart from the network's first convolution,
so the upscale pipeline needs no other knowledge of the network.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

ColourPlan = Literal["luma", "rgb"]


def input_channels(model: nn.Module) -> int:
    """Channels ``model`` takes: its ``in_channels`` / ``input_channels`` attribute if it has
    one, else the ``in_channels`` of its first ``nn.Conv2d`` (in registration order)."""
    for attr in ("in_channels", "input_channels"):
        value = getattr(model, attr, None)
        if isinstance(value, int):
            return value
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    raise ValueError(f"cannot tell how many channels {type(model).__name__} takes: it has no "
                     "in_channels attribute and no nn.Conv2d")


def colour_plan(model: nn.Module) -> ColourPlan:
    """``"luma"`` for a 1-channel network (Y through it; chroma and alpha bicubic), ``"rgb"``
    for a 3-channel one (RGB through it; alpha bicubic); a ValueError otherwise."""
    channels = input_channels(model)
    if channels == 1:
        return "luma"
    if channels == 3:
        return "rgb"
    raise ValueError(f"{type(model).__name__} takes {channels} channels; upscale supports "
                     "networks on luma (1 channel) or RGB (3 channels)")
