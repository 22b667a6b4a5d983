"""The benchmark suite: every layer of the zoo, every implementation, one process, interleaved."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .cases import Case, expected, ort_cases, reference_cases, torch_cases, upconv_cases
from .measure import (
    allocated_bytes,
    copy_bandwidth_gbs,
    interleaved_times,
    machine_info,
    median,
    peak_sgemm_gflops,
)
from .zoo import LAYERS, Layer, LayerTensors, all_layer_ids, layer_by_id, make_tensors

UPCONV_ALGORITHMS = ("revd2", "tdc", "auto")


@dataclass
class Row:
    """One implementation of one layer function, measured."""

    layer: str
    function: str  # SP / NN
    case: str
    family: str
    ms: float
    runs: int
    ratio_to_best_baseline: float | None
    gflops: float
    roofline_pct: float
    extra_bytes: int | None
    max_abs_error: float
    note: str = ""
    choice: str = ""  # algorithm="auto": the candidate it ran


@dataclass
class Results:
    machine: dict
    peak_gflops: float
    copy_gbs: float
    repeats: int
    scale: float
    rows: list[Row] = field(default_factory=list)
    reduced: list[Row] = field(default_factory=list)
    reduced_scale: float = 0.0
    gap_s: float = 0.0
    #: what ran (untimed) right before every timed call: "" for nothing
    before: str = ""
    targets: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _out_bytes(layer: Layer) -> int:
    return 4 * layer.n * layer.c * layer.r**2 * layer.h * layer.w


def previous_conv(layer: Layer, tensors: LayerTensors) -> Callable[[], object]:
    """The network's layer before the upsampler, as PyTorch runs it: a ``Cin → Cin`` 3×3 conv
    + ReLU on the layer's input (untimed, before each timed call: see
    :func:`~upconv.bench.measure.interleaved_times`)."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(layer.cin, layer.cin, 3, 3, generator=gen) * 0.05
    return lambda: torch.relu(torch.nn.functional.conv2d(tensors.x, w, padding=1))


PREVIOUS_CONV = "PyTorch conv Cin→Cin 3×3 + ReLU on the layer's input"


def measure_layer(layer: Layer, tensors: LayerTensors, cases: list[Case], repeats: int,
                  peak: float, bw: float, memory: bool = True, warmup: int = 2,
                  gap_s: float = 0.0, interleave_conv: bool = True) -> list[Row]:
    """Check every case against PyTorch's C-SP / C-NN, time them interleaved, build rows."""
    want = expected(layer, tensors)
    errors = {}
    for case in cases:
        with torch.no_grad():
            got = torch.as_tensor(np.asarray(case.fn()))
        errors[case.name] = float((got - want[case.expected_key]).abs().max())
    times = interleaved_times({c.name: c.fn for c in cases}, repeats, warmup, gap_s,
                              {c.name: c.settle_s for c in cases if c.settle_s},
                              previous_conv(layer, tensors) if interleave_conv else None)
    best = {}
    for case in cases:
        if case.family == "baseline":
            ms = median(times[case.name]) * 1e3
            best[case.function] = min(best.get(case.function, ms), ms)
    rows = []
    for case in cases:
        ms = median(times[case.name]) * 1e3
        flops = 2 * (layer.macs_sp() if case.function == "SP" else layer.macs_nn())
        bound_s = max(flops / (peak * 1e9), layer.io_bytes(case.weights) / (bw * 1e9))
        extra = None
        if memory and not case.name.startswith("onnxruntime"):
            extra = allocated_bytes(case.fn) - (0 if case.preallocated else _out_bytes(layer))
        base = best.get(case.function)
        rows.append(Row(layer.id, case.function, case.name, case.family, ms, len(times[case.name]),
                        None if base is None else base / ms, flops / (ms * 1e-3) / 1e9,
                        100 * bound_s / (ms * 1e-3), extra, errors[case.name], case.note,
                        case.choice() if case.choice else ""))
    return rows


def run_suite(layer_ids: Sequence[str] = tuple(LAYERS), repeats: int = 7,
              threads: int | None = None, scale: float = 1.0, reduced_scale: float = 0.125,
              with_ort: bool = True, with_references: bool = True, memory: bool = True,
              gap_s: float = 0.05, interleave_conv: bool = True,
              progress: Callable[[str], None] = lambda msg: None) -> Results:
    """Run the suite on ``layer_ids`` (from either zoo, L… or H…); ``scale`` shrinks every
    input (1.0 = the published sizes). With ``interleave_conv`` a PyTorch convolution (the
    network's previous layer) runs right before every timed call, as in a model."""
    valid = all_layer_ids()
    unknown = [i for i in layer_ids if i not in valid]
    if unknown:
        raise ValueError(f"unknown layer id(s) {unknown}; choose from {', '.join(valid)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    threads = threads or torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    # algorithm="auto" tunes afresh in this run (a private cache), so its choices reflect the
    # conditions being measured rather than whatever an earlier, maybe busier, run decided
    from .. import autotune

    saved_cache = os.environ.get(autotune.CACHE_ENV)
    tune_dir = tempfile.TemporaryDirectory(prefix="upconv-bench-autotune-")
    os.environ[autotune.CACHE_ENV] = tune_dir.name
    autotune.clear_memory()
    try:
        progress(f"measuring the machine ({threads} threads)")
        small_run = scale < 0.25  # smoke runs: a lighter calibration
        peak = peak_sgemm_gflops(threads, size=1024 if small_run else 2048)
        bw = copy_bandwidth_gbs(threads, megabytes=64 if small_run else 256)
        res = Results(machine_info(threads), peak, bw, repeats, scale,
                      reduced_scale=reduced_scale, gap_s=gap_s,
                      before=PREVIOUS_CONV if interleave_conv else "")
        for lid in layer_ids:
            layer = layer_by_id(lid).scaled(scale) if scale != 1.0 else layer_by_id(lid)
            tensors = make_tensors(layer)
            cases = torch_cases(layer, tensors)
            if with_ort:
                cases += ort_cases(layer, tensors, threads)
            cases += upconv_cases(layer, tensors, UPCONV_ALGORITHMS)
            progress(f"{lid}: {len(cases)} implementations × {repeats} runs")
            res.rows += measure_layer(layer, tensors, cases, repeats, peak, bw, memory,
                                      gap_s=gap_s, interleave_conv=interleave_conv)
            if with_references:
                small = layer.scaled(reduced_scale)
                small_t = make_tensors(small)
                ref = reference_cases(small, small_t)
                ref += upconv_cases(small, small_t, ("revd2",), with_out=False)
                ref += [c for c in torch_cases(small, small_t) if c.family == "baseline"]
                progress(f"{lid}: reference algorithms at {small.h}×{small.w}")
                res.reduced += measure_layer(small, small_t, ref, max(3, repeats // 2), peak, bw,
                                             memory=False, warmup=1, gap_s=gap_s)
        res.targets = evaluate_targets(res.rows)
        return res
    finally:
        torch.set_num_threads(before)
        if saved_cache is None:
            os.environ.pop(autotune.CACHE_ENV, None)
        else:
            os.environ[autotune.CACHE_ENV] = saved_cache
        autotune.clear_memory()
        tune_dir.cleanup()


def _ms(rows: list[Row], layer: str, case: str) -> float | None:
    return next((r.ms for r in rows if r.layer == layer and r.case == case), None)


GENERIC = " (generic)"  # suffix of the targets applied to layers outside the L1–L6


def evaluate_targets(rows: list[Row]) -> list[dict]:
    """The issue's ratio targets, each with the measured value and whether it is met.

    L1–L6 get the issue's per-layer targets; every other layer (the held-out H1–H6) gets the
    generic ones, labelled ``(generic)``: D-SP vs best C-SP ≥ 1.0, D-SP vs
    ``conv_transpose2d`` ≥ 3.0, D-NN vs ``conv_transpose2d`` ≥ 1.5, auto ≥ 0.95 of the best
    baseline.
    """
    out = []

    def add(layer: str, what: str, num: float | None, den: float | None, target: float) -> None:
        if num is None or den is None:
            return
        value = num / den
        out.append({"layer": layer, "target": what, "value": round(value, 3), "goal": target,
                    "met": value >= target})

    layers = sorted({r.layer for r in rows})
    for lid in layers:
        if lid not in LAYERS:
            out += _generic_targets(rows, lid)
            continue
        dsp = _ms(rows, lid, "upconv revd2 (D-SP)")
        dnn = _ms(rows, lid, "upconv revd2 (D-NN)")
        csp = [_ms(rows, lid, f"torch conv+pixel_shuffle ({f})") for f in ("NCHW", "channels_last")]
        best_csp = min((v for v in csp if v is not None), default=None)
        goal = 1.0 if lid in ("L4", "L5") else 1.3
        add(lid, "D-SP revd2 vs best torch C-SP", best_csp, dsp, goal)
        add(lid, "D-SP revd2 vs torch conv_transpose2d", _ms(
            rows, lid, "torch conv_transpose2d (D-SP weights)"), dsp, 3.0)
        if lid == "L1":
            add(lid, "D-NN revd2 vs torch resize-conv", _ms(
                rows, lid, "torch interpolate(nearest)+conv"), dnn, 10.0)
        if lid in ("L1", "L2", "L3", "L4"):
            add(lid, "D-NN revd2 vs torch conv_transpose2d", _ms(
                rows, lid, "torch conv_transpose2d (D-NN weights)"), dnn, 1.5)
        for fun in ("SP", "NN"):
            # like "best C-SP": the faster of the NCHW and channels_last inputs
            ratios = [r.ratio_to_best_baseline for r in rows if r.layer == lid
                      and r.case.startswith(f"upconv auto (D-{fun}")
                      and r.ratio_to_best_baseline is not None]
            if ratios:
                out.append({"layer": lid, "target": f"auto (D-{fun}) vs best baseline",
                            "value": round(max(ratios), 3), "goal": 0.95,
                            "met": max(ratios) >= 0.95})
        l1 = next((r for r in rows if r.layer == lid and r.case == "upconv revd2 (D-SP)"), None)
        if lid == "L1" and l1 is not None:
            out.append({"layer": lid, "target": "D-SP revd2 % of roofline",
                        "value": round(l1.roofline_pct, 1), "goal": 50.0,
                        "met": l1.roofline_pct >= 50.0})
    return out


def _best_auto(rows: list[Row], lid: str, fun: str) -> float | None:
    """auto's best ratio to the best baseline over the input layouts (like "best C-SP")."""
    ratios = [r.ratio_to_best_baseline for r in rows if r.layer == lid
              and r.case.startswith(f"upconv auto (D-{fun}")
              and r.ratio_to_best_baseline is not None]
    return max(ratios) if ratios else None


def _generic_targets(rows: list[Row], lid: str) -> list[dict]:
    """The generic targets for a layer outside the issue's list (a held-out layer)."""
    out = []

    def add(what: str, value: float | None, goal: float) -> None:
        if value is not None:
            out.append({"layer": lid, "target": what + GENERIC, "value": round(value, 3),
                        "goal": goal, "met": value >= goal})

    def ratio(num: float | None, den: float | None) -> float | None:
        return None if num is None or den is None else num / den

    dsp = _ms(rows, lid, "upconv revd2 (D-SP)")
    dnn = _ms(rows, lid, "upconv revd2 (D-NN)")
    csp = [_ms(rows, lid, f"torch conv+pixel_shuffle ({f})") for f in ("NCHW", "channels_last")]
    best_csp = min((v for v in csp if v is not None), default=None)
    add("D-SP revd2 vs best torch C-SP", ratio(best_csp, dsp), 1.0)
    add("D-SP revd2 vs torch conv_transpose2d",
        ratio(_ms(rows, lid, "torch conv_transpose2d (D-SP weights)"), dsp), 3.0)
    add("D-NN revd2 vs torch conv_transpose2d",
        ratio(_ms(rows, lid, "torch conv_transpose2d (D-NN weights)"), dnn), 1.5)
    for fun in ("SP", "NN"):
        add(f"auto (D-{fun}) vs best baseline", _best_auto(rows, lid, fun), 0.95)
    return out
