"""``upconv demo``: the bundled ×3 ESPCN on the BSD300 koala, trained path vs REVD2 path."""

from __future__ import annotations

import click


@click.command()
@click.option("--outdir", type=click.Path(file_okay=False), default="upconv-demo",
              show_default=True, help="Where the figure and the upscaled image go.")
@click.option("--repeats", type=click.IntRange(min=1), default=7, show_default=True,
              help="Timed runs per path (alternating; the median is reported).")
def demo(outdir: str, repeats: int) -> None:
    """Upscale the bundled BSD300 koala ×3 through the trained sub-pixel path and the
    converted REVD2 path; print agreement, quality, latency and cost-model estimates."""
    from rich.console import Console
    from rich.table import Table

    from ..sr.demo import ALGORITHM, COST_PROFILE, MODEL, run_demo

    console = Console()
    try:
        result = run_demo(outdir, repeats)
    except OSError as err:
        raise click.ClickException(f"cannot write the demo output: {err}") from None
    (w, h), (ow, oh) = result.low_res, result.high_res
    console.print(f"[bold]BSD300 koala[/] {w}×{h} → {ow}×{oh} (width×height) with the "
                  f"bundled {MODEL}")
    console.print(f"max |sub-pixel − {ALGORITHM}| over the output: {result.max_diff:.2e}")

    rt = result.round_trip
    console.print("round trip (koala downscaled ×3 by bicubic, upscaled back), Y, "
                  "border 3 cropped:")
    quality = Table()
    for col in ("method", "PSNR dB", "SSIM"):
        quality.add_column(col, justify="right" if col != "method" else "left")
    for method, label in (("bicubic", "bicubic"), ("model", "ESPCN sub-pixel"),
                          ("converted", f"ESPCN {ALGORITHM}")):
        quality.add_row(label, f"{rt.psnr[method]:.3f}", f"{rt.ssim[method]:.4f}")
    console.print(quality)
    gain = rt.psnr["model"] - rt.psnr["bicubic"]
    console.print(f"ESPCN beats bicubic by {gain:+.3f} dB PSNR, "
                  f"{rt.ssim['model'] - rt.ssim['bicubic']:+.4f} SSIM")

    console.print(f"latency on this machine, median of {repeats} alternating calls, {w}×{h} input:")
    latency = Table()
    for col in ("path", "whole network ms", "upsampling layer ms"):
        latency.add_column(col, justify="right" if "ms" in col else "left")
    for name, t in result.timing.items():
        latency.add_row(name, f"{1e3 * t.network_s:.1f}", f"{1e3 * t.upsampler_s:.1f}")
    console.print(latency)

    if result.cost is None:
        console.print(f"[yellow]{result.cost_note}[/]")
    else:
        console.print(f"cost model ({COST_PROFILE}), upsampling layer 32→1 ×3 on {w}×{h}:")
        cost = Table()
        for col in ("layer", "MACs", "time µs", "energy µJ"):
            cost.add_column(col, justify="right" if col != "layer" else "left")
        for row in result.cost:
            cost.add_row(row.label, f"{row.macs:,}", f"{1e6 * row.time_s:.1f}",
                         f"{1e6 * row.energy_j:.1f}")
        console.print(cost)
        base, edge = result.cost
        console.print(f"estimated {ALGORITHM} vs sub-pixel: {base.time_s / edge.time_s:.2f}× "
                      f"faster, {base.energy_j / edge.energy_j:.2f}× less energy")
    for path in result.files:
        console.print(f"wrote {path}")
