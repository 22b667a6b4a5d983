"""The paper's demonstration: the bundled ×3 ESPCN on the BSD300 koala, trained form vs REVD2.

Upsamples the koala (321×481 → 963×1443) through the trained sub-pixel path and the
converted REVD2 path, compares them, scores a downscale-then-upscale round trip against
bicubic, times both paths, asks the cost model for both upsampling layers, and writes a
comparison figure and the upscaled image.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .atomic import atomic_write
from .datasets import koala_path, make_pair
from .evaluate import ImageScores, evaluate_pair
from .images import luma, merge_luma, open_image, save_image
from .pretrained import load_pretrained

MODEL = "espcn-x3"
ALGORITHM = "revd2"
COST_PROFILE = "horowitz-45nm"
#: The koala's face, ``(left, top, right, bottom)`` in low-res pixels: the figure's zoom.
KOALA_FACE = (60, 20, 260, 170)


@dataclass
class PathTiming:
    """Median wall time (s) of the whole network and of its upsampling layer."""

    network_s: float
    upsampler_s: float


@dataclass
class CostEstimate:
    """The cost model's figures for one upsampling layer at the koala's size."""

    label: str
    macs: int
    time_s: float
    energy_j: float


@dataclass
class DemoResult:
    """Everything ``upconv demo`` prints (paths of the written files included)."""

    low_res: tuple[int, int]  # (width, height)
    high_res: tuple[int, int]  # (width, height)
    max_diff: float
    round_trip: ImageScores
    timing: dict[str, PathTiming]
    cost: list[CostEstimate] | None
    cost_note: str | None
    files: list[Path] = field(default_factory=list)


def time_paths(paths: dict[str, nn.Module], x: torch.Tensor, repeats: int
               ) -> tuple[dict[str, torch.Tensor], dict[str, PathTiming]]:
    """Run each ESPCN of ``paths`` on ``x`` (the warm-up, whose output is returned), then time
    it: the whole network and its upsampling layer alone, the paths alternating call by call,
    median of ``repeats`` rounds (one path's slow call is not the other's luck)."""
    outputs = {}
    times: dict[tuple[str, str], list[float]] = {}
    with torch.inference_mode():
        features = next(iter(paths.values())).features(x)
        for name, net in paths.items():
            outputs[name] = net(x)
            net.upsample(features)
        for _ in range(repeats):
            for name, net in paths.items():
                for part, fn in (("network", lambda n=net: n(x)),
                                 ("upsampler", lambda n=net: n.upsample(features))):
                    t0 = time.perf_counter()
                    fn()
                    times.setdefault((name, part), []).append(time.perf_counter() - t0)
    timing = {name: PathTiming(statistics.median(times[name, "network"]),
                               statistics.median(times[name, "upsampler"])) for name in paths}
    return outputs, timing


def cost_estimates(height: int, width: int, scale: int) -> tuple[list[CostEstimate] | None,
                                                                  str | None]:
    """Cost-model time and energy of the trained (C-SP) and REVD2 (D-SP) upsampling layers."""
    try:
        from .. import cost
        profile = cost.load_profile(COST_PROFILE)
    except (ImportError, AttributeError) as err:
        return None, f"cost model not available in this build ({err})"
    rows = []
    for op, algorithm in (("C-SP", None), ("D-SP", ALGORITHM)):
        counts = cost.count(op, in_channels=32, out_channels=1, kernel_size=3, scale=scale,
                            height=height, width=width, algorithm=algorithm)
        est = cost.estimate(counts, profile)
        rows.append(CostEstimate(counts.label, counts.macs, est.time_s, est.energy_j))
    return rows, None


def comparison_figure(path: Path, low: Image.Image, bicubic: Image.Image, espcn: Image.Image,
                      diff: np.ndarray, title: str,
                      zoom: tuple[int, int, int, int] | None = None) -> Path:
    """Write low-res | bicubic | ESPCN | difference map: full views, then a zoomed crop.

    ``zoom``: ``(left, top, right, bottom)`` in low-res pixels (default: the centre third).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = espcn.width // low.width
    if zoom is None:
        zoom = (low.width // 3, low.height // 3, 2 * low.width // 3, 2 * low.height // 3)
    left, top, right, bottom = zoom
    panels = {"low-res": (low, 1), f"bicubic ×{r}": (bicubic, r),
              f"ESPCN ×{r} ({ALGORITHM})": (espcn, r)}
    zoom_aspect = (bottom - top) / (right - left)
    fig, axes = plt.subplots(2, 4, figsize=(13, 3.2 * (low.height / low.width + zoom_aspect)),
                             layout="constrained",
                             gridspec_kw={"height_ratios": [low.height / low.width, zoom_aspect]})
    for col, (name, (img, s)) in enumerate(panels.items()):
        axes[0, col].imshow(img, interpolation="nearest")
        axes[0, col].set_title(f"{name}  {img.width}×{img.height}", fontsize=9)
        axes[1, col].imshow(img.crop((s * left, s * top, s * right, s * bottom)),
                            interpolation="nearest")
        axes[1, col].set_title(f"{name}, zoom", fontsize=9)
    vmax = max(float(np.percentile(diff, 99.5)), 1e-6)  # a few hot pixels would darken the rest
    im = axes[0, 3].imshow(diff, cmap="magma", vmin=0, vmax=vmax)
    axes[0, 3].set_title("|ESPCN − bicubic| on Y", fontsize=9)
    fig.colorbar(im, ax=axes[:, 3], shrink=0.6)
    axes[1, 3].imshow(diff[r * top : r * bottom, r * left : r * right], cmap="magma",
                      vmin=0, vmax=vmax, interpolation="nearest")
    axes[1, 3].set_title("difference, zoom", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def run_demo(outdir: str | Path = "upconv-demo", repeats: int = 7) -> DemoResult:
    """Run the demonstration, write ``outdir/comparison.png`` and ``outdir/koala-x3.png``."""
    outdir = Path(outdir)
    model = load_pretrained(MODEL)
    edge = model.to_deconv(ALGORITHM)
    scale = model.scale
    koala = open_image(koala_path())
    x = torch.from_numpy(luma(koala))[None, None]
    outputs, timing = time_paths(
        {"sub-pixel conv (trained)": model, f"{ALGORITHM} (converted)": edge}, x, repeats)
    y_conv, y_edge = outputs.values()
    max_diff = float((y_conv - y_edge).abs().max())
    round_trip = evaluate_pair(make_pair("koala", koala, scale), model, edge)
    cost, note = cost_estimates(koala.height, koala.width, scale)

    outdir.mkdir(parents=True, exist_ok=True)
    y_up = y_edge[0, 0].clamp(0, 1).numpy()
    espcn = merge_luma(y_up, koala)
    bicubic = koala.resize(espcn.size, Image.Resampling.BICUBIC)
    diff = np.abs(luma(espcn) - luma(bicubic))
    image_path = save_image(espcn, outdir / f"koala-x{scale}.png")
    figure_path = comparison_figure(
        outdir / "comparison.png", koala, bicubic, espcn, diff,
        f"BSD300 koala ×{scale}: bundled {MODEL}, converted to {ALGORITHM} "
        f"(max |sub-pixel − {ALGORITHM}| = {max_diff:.1e})", zoom=KOALA_FACE)
    return DemoResult(koala.size, (y_edge.shape[-1], y_edge.shape[-2]), max_diff,
                      round_trip, timing, cost, note, [figure_path, image_path])
