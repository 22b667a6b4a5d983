"""Reports: per-layer and whole-model estimates under every strategy, as data, JSON or a table.

A report is a plain dict (what ``--json`` prints): the profile, and for each upsampling layer
and for the whole model, each strategy's counts, estimate and ratios against ``"trained"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .counts import combine
from .estimate import estimate, estimate_all
from .profiles import HardwareProfile
from .walk import STRATEGIES, LayerCost, LayerSpec, ModelCost, layer_cost, ratio

COUNT_FIELDS = ("macs", "zero_macs", "weight_reads", "activation_traffic", "transform_traffic",
                "partial_sum_traffic", "temporary_bytes")


def layer_model(op: str, *, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                scale: int | Sequence[int] = 1, height: int, width: int, batch: int = 1,
                dtype: str = "float32", stride: int | Sequence[int] | None = None,
                padding: int | Sequence[int] = 0, output_padding: int | Sequence[int] = 0
                ) -> ModelCost:
    """One upsampling layer as a one-layer model: ``op`` C-SP / D-SP or C-NN / D-NN (the
    trained kernel and scale), or ``"deconv"`` (a deconvolution given directly by its kernel,
    ``stride``, ``padding`` and ``output_padding``; "trained" then means PyTorch's STDD)."""
    kinds = {"C-SP": "C-SP", "D-SP": "C-SP", "C-NN": "C-NN", "D-NN": "C-NN", "deconv": "deconv"}
    if op not in kinds:
        raise ValueError(f"op must be one of {', '.join(kinds)}; got {op!r}")
    if op == "deconv":
        if stride is None:
            raise ValueError("op='deconv' needs a stride")
        spec = LayerSpec(op, "deconv", dict(
            in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
            stride=stride, padding=padding, output_padding=output_padding, height=height,
            width=width))
    else:
        spec = LayerSpec(op, kinds[op], dict(
            in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
            scale=scale, height=height, width=width))
    layer = layer_cost(spec, batch, dtype)
    shape = (batch, in_channels, height, width)
    return ModelCost(f"{kinds[op]} layer", shape, dtype, (layer,))


def _entry(counts_list, profile: HardwareProfile, mode: str) -> dict:
    counts = combine(counts_list) if len(counts_list) > 1 else counts_list[0]
    est = estimate_all(counts_list, profile, mode)
    return {"counts": {k: getattr(counts, k) for k in COUNT_FIELDS},
            "estimate": est.as_dict(), "labels": sorted({c.label for c in counts_list})}


def _with_ratios(rows: dict[str, dict]) -> dict[str, dict]:
    base = rows["trained"]["estimate"]
    for row in rows.values():
        est = row["estimate"]
        row["vs_trained"] = {"time": ratio(base["time_s"], est["time_s"]),
                             "energy": ratio(base["energy_j"], est["energy_j"])}
    return rows


def _layer_rows(layer: LayerCost, profile: HardwareProfile, mode: str) -> dict[str, dict]:
    return _with_ratios({s: _entry([layer.counts[s]], profile, mode) for s in STRATEGIES})


def build_report(model: ModelCost, profile: HardwareProfile, mode: str = "roofline") -> dict:
    """Estimates of every upsampling layer and of the whole model, under every strategy."""
    for layer in model.layers:  # fail early on a dtype the profile lacks
        estimate(layer.under("trained"), profile, mode)
    upsampling = [{"name": layer.spec.name, "kind": layer.spec.kind,
                   "description": layer.spec.describe(),
                   "strategies": _layer_rows(layer, profile, mode)}
                  for layer in model.upsampling]
    whole = _with_ratios({s: _entry(model.under(s), profile, mode) for s in STRATEGIES})
    return {
        "model": model.name, "input_shape": list(model.input_shape), "dtype": model.dtype,
        "profile": {"name": profile.name, "source": profile.source,
                    "onchip_capacity_bytes": profile.onchip_capacity_bytes,
                    "feature_maps": profile.feature_maps},
        "mode": mode,
        "layers": [{"name": layer.spec.name, "kind": layer.spec.kind,
                    "description": layer.spec.describe()} for layer in model.layers],
        "upsampling": upsampling,
        "whole_model": whole,
        "notes": list(getattr(model, "notes", ())),
    }


# --- terminal table -----------------------------------------------------------------------


def si(value: float, unit: str = "") -> str:
    """``1234567`` → ``"1.23 M"``."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def _table(title: str, rows: dict[str, dict]):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in ("strategy", "MACs", "zero", "W", "A", "P", "psum", "temp", "off-chip",
                 "time", "bound", "energy", "compute/on/off", "× time", "× energy"):
        table.add_column(name, justify="left" if name in ("strategy", "bound") else "right")
    for strategy, row in rows.items():
        c, e = row["counts"], row["estimate"]
        parts = [e["compute_j"], e["onchip_j"], e["offchip_j"]]
        total = e["energy_j"]
        split = "/".join(f"{100 * p / total:.0f}" for p in parts) if total else "-"
        label = strategy if strategy != "trained" else "trained (" + ",".join(row["labels"]) + ")"
        table.add_row(
            label, si(c["macs"]), si(c["zero_macs"]), si(c["weight_reads"]),
            si(c["activation_traffic"]), si(c["transform_traffic"]),
            si(c["partial_sum_traffic"]), si(c["temporary_bytes"], "B"),
            si(e["offchip_bytes"], "B"), f"{e['time_s'] * 1e3:.3g} ms", e["bound"],
            f"{e['energy_j'] * 1e3:.3g} mJ",
            split, f"{row['vs_trained']['time']:.2f}", f"{row['vs_trained']['energy']:.2f}")
    return table


def wide_console():
    """A rich console; when piped, 180 columns wide rather than squeezed into 80."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=180)


def print_report(report: dict, console=None) -> None:
    """Rich tables: one per upsampling layer, then the whole model."""
    console = console or wide_console()
    p = report["profile"]
    console.print(f"[bold]{report['model']}[/bold] input {tuple(report['input_shape'])}, "
                  f"{report['dtype']}, profile [bold]{p['name']}[/bold] ({report['mode']}); "
                  "counts are elements, × = trained / strategy (higher is better)")
    for note in report.get("notes", ()):
        console.print(f"[yellow]note:[/yellow] {note}")
    for layer in report["upsampling"]:
        console.print(_table(f"{layer['name']}: {layer['description']}", layer["strategies"]))
    if len(report["layers"]) > 1 or not report["upsampling"]:
        console.print(_table(f"whole model ({len(report['layers'])} counted layers)",
                             report["whole_model"]))
