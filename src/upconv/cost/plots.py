"""Matplotlib figures of a cost report: counts and energy split per strategy, scaling curves."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

from .estimate import estimate
from .profiles import HardwareProfile
from .walk import STRATEGIES, LayerSpec, ModelCost, layer_cost

COUNT_BARS = (("macs", "M"), ("zero_macs", "zero M"), ("weight_reads", "W"),
              ("activation_traffic", "A"), ("transform_traffic", "P"),
              ("partial_sum_traffic", "psum"))
SPLIT = (("compute_j", "compute"), ("onchip_j", "on-chip"), ("offchip_j", "off-chip"))
COLORS = {"compute": "tab:blue", "on-chip": "tab:orange", "off-chip": "tab:green"}
SWEEPS = (("scale", (2, 3, 4, 5, 6, 8), "scale factor r"),
          ("height", (32, 64, 128, 256, 512, 1024), "input height = width"),
          ("in_channels", (4, 8, 16, 32, 64, 128, 256), "input channels"))


def _bars_counts(ax, rows: dict) -> None:
    import numpy as np

    xs = np.arange(len(COUNT_BARS))
    width = 0.8 / len(rows)
    for i, (strategy, row) in enumerate(rows.items()):
        values = [max(row["counts"][k], 0.5) for k, _ in COUNT_BARS]
        ax.bar(xs + i * width, values, width, label=strategy)
    ax.set_xticks(xs + 0.4 - width / 2, [label for _, label in COUNT_BARS])
    ax.set_yscale("log")
    ax.set_ylabel("elements")
    ax.legend(fontsize=7)


def _bars_split(ax, rows: dict, title: str) -> None:
    names = list(rows)
    bottom = [0.0] * len(names)
    for key, label in SPLIT:
        values = [rows[s]["estimate"][key] * 1e3 for s in names]
        ax.bar(names, values, bottom=bottom, label=label, color=COLORS[label])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("energy (mJ)")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=7)


def _bars_time(ax, rows: dict, mode: str) -> None:
    import numpy as np

    names = list(rows)
    xs = np.arange(len(names))
    parts = (("compute_s", "compute"), ("offchip_s", "off-chip"), ("onchip_s", "on-chip"))
    for i, (key, label) in enumerate(parts):
        ax.bar(xs + (i - 1) * 0.27, [rows[s]["estimate"][key] * 1e3 for s in names], 0.27,
               label=label, color=COLORS[label])
    ax.plot(xs, [rows[s]["estimate"]["time_s"] * 1e3 for s in names], "k_", markersize=18,
            label=f"time ({mode})")
    ax.set_xticks(xs, names)
    ax.set_ylabel("time (ms)")
    ax.set_title("time components, upsampling layer", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=7)


def _sweep(ax, spec: LayerSpec, batch: int, dtype: str, profile: HardwareProfile, key: str,
           values: tuple[int, ...], label: str) -> None:
    curves: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for v in values:
        params = dict(spec.params)
        if key == "height":
            params["height"] = params["width"] = v
        else:
            params[key] = v
        layer = layer_cost(replace(spec, params=params), batch, dtype)
        for s in STRATEGIES:
            curves[s].append(estimate(layer.counts[s], profile).energy_j * 1e3)
    for s, ys in curves.items():
        ax.plot(values, ys, marker="o", markersize=3, label=s)
    if key != "scale":
        ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("energy (mJ)")
    ax.legend(fontsize=7)


def plot_report(report: dict, profile: HardwareProfile, path: str | os.PathLike,
                model: ModelCost | None = None) -> Path:
    """Write a PNG: counts and energy split of the first upsampling layer, the whole model's
    energy split, and energy against scale, input size and channels. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not report.get("upsampling"):
        raise ValueError("the report has no upsampling layer to plot")
    layer = report["upsampling"][0]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    fig.suptitle(f"{report['model']}: {layer['description']} — profile {profile.name}, "
                 f"{report['dtype']}", fontsize=11)
    _bars_counts(axes[0, 0], layer["strategies"])
    axes[0, 0].set_title("work and traffic per strategy", fontsize=9)
    _bars_split(axes[0, 1], layer["strategies"], "energy split, upsampling layer")
    if len(report["layers"]) > 1:
        _bars_split(axes[0, 2], report["whole_model"], "energy split, whole model")
    else:
        _bars_time(axes[0, 2], layer["strategies"], report["mode"])
    up = next((lc for lc in (model.upsampling if model else ()) if lc.spec.kind != "deconv"),
              None)
    for ax, (key, values, label) in zip(axes[1], SWEEPS, strict=True):
        if up is None:
            ax.text(0.5, 0.5, "scaling curves need a C-SP / C-NN layer", ha="center")
            ax.set_axis_off()
            continue
        _sweep(ax, up.spec, model.input_shape[0], model.dtype, profile, key, values, label)
        ax.set_title(f"energy against {label}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--plot writes a PNG; give a path ending in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
