"""``upconv demo``: convert a sub-pixel and a resize-conv layer and show they agree.

(Grows into the super-resolution demo once the application lands.)"""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Convert a sub-pixel layer and a resize-conv layer; print the equivalence."""
    import torch

    import upconv

    torch.manual_seed(0)
    x = torch.randn(1, 32, 107, 160)
    for layer in (upconv.SubPixelConv2d(32, 1, 3, 3), upconv.ResizeConv2d(32, 1, 3, 3)):
        y = layer(x)
        for algorithm in upconv.ALGORITHMS:
            d = layer.to_deconv(algorithm)(x)
            err = (d - y).abs().max().item()
            click.echo(f"{type(layer).__name__:>15} -> Deconv2d[{algorithm:5}]  "
                       f"{tuple(x.shape)} -> {tuple(y.shape)}  max |diff| = {err:.2e}")
