"""Predicted against measured: the model's time estimates next to timings taken here.

For a few benchmark layers (reduced sizes, so it runs in about a minute on a laptop) each
strategy is timed as upconv runs it on this CPU (the trained layer through PyTorch's conv +
pixel shuffle / interpolate, the deconvolution through each reference algorithm, and PyTorch's
own ``conv_transpose2d``, which is STDD-like) with a fixed thread count, warm-up and the median
of several runs. The report gives Spearman's rank correlation and the error of the prediction.
Use a profile from ``upconv calibrate`` (measured with the same thread count).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .calibrate import torch_threads, wall_times
from .estimate import estimate
from .profiles import HardwareProfile
from .walk import STRATEGIES, LayerSpec, layer_cost


@dataclass(frozen=True)
class BenchLayer:
    """A benchmark upsampling layer: ``kind`` C-SP / C-NN, input ``(batch, cin, h, w)``."""

    name: str
    kind: str
    cin: int
    c: int
    k: int
    r: int
    h: int
    w: int
    batch: int = 1

    @property
    def spec(self) -> LayerSpec:
        return LayerSpec(self.name, self.kind, dict(
            in_channels=self.cin, out_channels=self.c, kernel_size=self.k, scale=self.r,
            height=self.h, width=self.w))


#: the benchmark layers at reduced size (ESPCN's upsampler, a wide x2, a x4 decoder-style one)
BENCH_LAYERS: tuple[BenchLayer, ...] = (
    BenchLayer("espcn-up", "C-SP", 32, 1, 3, 3, 107, 160),
    BenchLayer("espcn-up-nn", "C-NN", 32, 1, 3, 3, 107, 160),
    BenchLayer("wide-x2", "C-SP", 64, 16, 3, 2, 64, 64),
    BenchLayer("wide-x2-nn", "C-NN", 64, 16, 3, 2, 64, 64),
    BenchLayer("decoder-x4", "C-SP", 16, 8, 3, 4, 48, 48),
)


def _runner(layer: BenchLayer, strategy: str):
    import torch

    import upconv

    g = torch.Generator().manual_seed(0)
    x = torch.randn(layer.batch, layer.cin, layer.h, layer.w, generator=g)
    if layer.kind == "C-SP":
        w = torch.randn(layer.c * layer.r**2, layer.cin, layer.k, layer.k, generator=g)
        module = upconv.SubPixelConv2d(layer.cin, layer.c, layer.k, layer.r, bias=False)
    else:
        w = torch.randn(layer.c, layer.cin, layer.k, layer.k, generator=g)
        module = upconv.ResizeConv2d(layer.cin, layer.c, layer.k, layer.r, bias=False)
    with torch.no_grad():
        module.weight.copy_(w)
    if strategy == "trained":
        return lambda: module(x)
    d = module.to_deconv()
    if strategy == "torch":
        return lambda: torch.nn.functional.conv_transpose2d(
            x, d.weight, stride=d.stride, padding=d.geometry.symmetric_padding)
    from upconv.algorithms import REFERENCES
    from upconv.functional import check_deconv

    if strategy == "revd2-compiled":
        from upconv.kernels import deconv2d_revd2_compiled as impl
    elif strategy == "tdc-torch":
        from upconv.kernels.torch_paths import deconv2d_tdc_torch as impl
    else:  # the readable reference, not whatever deconv2d dispatches the name to
        impl = REFERENCES[strategy]
    call = check_deconv(x, d.weight, None, d.stride, d.padding)
    return lambda: impl(call.x, call.weight, None, call.stride, call.padding,
                        call.output_padding, call.out_size)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (Pearson correlation of average ranks); nan if undefined."""
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return math.nan
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return math.nan if va == 0 or vb == 0 else cov / math.sqrt(va * vb)


def compiled_available() -> bool:
    """Whether the compiled REVD2 engine (:mod:`upconv.kernels`) can be timed too."""
    try:
        from upconv.kernels import deconv2d_revd2_compiled  # noqa: F401
    except ImportError:
        return False
    return True


#: what each timed strategy is predicted as
PREDICTED_AS = {"torch": "stdd", "revd2-compiled": "revd2", "tdc-torch": "tdc"}


def validate_model(profile: HardwareProfile, layers: tuple[BenchLayer, ...] = BENCH_LAYERS,
                   *, threads: int = 1, repeats: int = 5, mode: str = "roofline",
                   compiled: bool | None = None) -> dict:
    """Time every (layer, strategy) here and compare with the model's predicted time.

    Strategies: ``trained``, each reference algorithm, PyTorch's ``conv_transpose2d``
    (``torch``, predicted as STDD) and, when ``compiled`` (default: if available), the
    compiled REVD2 engine (``revd2-compiled``)."""
    import torch

    extra = ["torch", "tdc-torch"] + (["revd2-compiled"] if (
        compiled_available() if compiled is None else compiled) else [])
    cases: list[dict] = []
    skipped: list[str] = []
    with torch_threads(threads), torch.no_grad():
        for layer in layers:
            lc = layer_cost(layer.spec, layer.batch, "float32")
            for strategy in (*STRATEGIES, *extra):
                counts = lc.counts[PREDICTED_AS.get(strategy, strategy)]
                predicted = estimate(counts, profile, mode).time_s
                try:
                    times = wall_times(_runner(layer, strategy), repeats)
                except Exception as err:  # the compiled engine is optional; note and go on
                    if strategy != "revd2-compiled":
                        raise
                    skipped.append(f"{layer.name}/{strategy}: {type(err).__name__}: "
                                   f"{str(err).splitlines()[0][:200]}")
                    continue
                measured = statistics.median(times)
                cases.append({"layer": layer.name, "strategy": strategy,
                              "predicted_s": predicted, "measured_s": measured,
                              "fastest_s": min(times),
                              "measured_over_predicted": measured / predicted})
    pred = [c["predicted_s"] for c in cases]
    meas = [c["measured_s"] for c in cases]
    logs = [math.log10(c["measured_over_predicted"]) for c in cases]
    per_layer = {}
    for layer in layers:
        rows = [c for c in cases if c["layer"] == layer.name]
        per_layer[layer.name] = spearman([c["predicted_s"] for c in rows],
                                         [c["measured_s"] for c in rows])
    worst = sorted(cases, key=lambda c: -abs(math.log10(c["measured_over_predicted"])))
    return {
        "profile": profile.name, "threads": threads, "repeats": repeats, "mode": mode,
        "cases": cases, "spearman": spearman(pred, meas), "spearman_per_layer": per_layer,
        # the fastest run is less disturbed by other load on a shared machine
        "spearman_fastest": spearman(pred, [c["fastest_s"] for c in cases]),
        "median_abs_log10_error": sorted(abs(v) for v in logs)[len(logs) // 2],
        "geometric_mean_measured_over_predicted": 10 ** (sum(logs) / len(logs)),
        "worst": [(c["layer"], c["strategy"], c["measured_over_predicted"]) for c in worst[:5]],
        "skipped": skipped,
    }


def print_validation(results: dict, console=None) -> None:
    from rich.table import Table

    from .report import wide_console

    console = console or wide_console()
    table = Table(title=f"predicted ({results['profile']}, {results['mode']}) vs measured here, "
                  f"{results['threads']} thread(s), median of {results['repeats']}",
                  title_justify="left")
    for col in ("layer", "strategy", "predicted", "measured", "measured / predicted"):
        table.add_column(col, justify="left" if col in ("layer", "strategy") else "right")
    for c in results["cases"]:
        table.add_row(c["layer"], c["strategy"], f"{c['predicted_s'] * 1e3:.3g} ms",
                      f"{c['measured_s'] * 1e3:.3g} ms", f"{c['measured_over_predicted']:.2f}")
    console.print(table)
    per = ", ".join(f"{k} {v:.2f}" for k, v in results["spearman_per_layer"].items())
    console.print(f"Spearman rank correlation, all cases: {results['spearman']:.2f} "
                  f"(fastest runs: {results['spearman_fastest']:.2f}); per layer: {per}")
    console.print(f"median |log10(measured/predicted)|: {results['median_abs_log10_error']:.2f}; "
                  "geometric mean measured/predicted: "
                  f"{results['geometric_mean_measured_over_predicted']:.2f}")
    console.print("largest misses: " + "; ".join(f"{a}/{b} x{r:.2f}"
                                                 for a, b, r in results["worst"]))
    for line in results.get("skipped", []):
        console.print(f"skipped {line}")
