"""Write the suite's results: a markdown table and JSON with machine info, atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .cases import ORT_SETTLE_S
from .suite import GENERIC, Results, Row


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    if abs(n) < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
    return str(n)


def _table(rows: list[Row], with_memory: bool = True) -> list[str]:
    head = "| layer | fn | implementation | ms | × best baseline | GFLOP/s | % roofline |"
    sep = "|---|---|---|---:|---:|---:|---:|"
    if with_memory:
        head += " extra bytes |"
        sep += "---:|"
    lines = [head + " max abs err |", sep + "---:|"]
    for r in rows:
        ratio = "" if r.ratio_to_best_baseline is None else f"{r.ratio_to_best_baseline:.2f}"
        name = r.case + (" †" if r.note else "") + (f" → {r.choice}" if r.choice else "")
        line = (f"| {r.layer} | {r.function} | {name} | {r.ms:.2f} | {ratio} | {r.gflops:.1f} "
                f"| {r.roofline_pct:.0f} |")
        if with_memory:
            line += f" {_fmt_bytes(r.extra_bytes)} |"
        lines.append(line + f" {r.max_abs_error:.1e} |")
    return lines


def markdown(res: Results) -> str:
    """The results as a self-describing markdown document."""
    m = res.machine
    out = [
        "# upconv benchmark results", "",
        f"- date (UTC): {m['date_utc']}; CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs, "
        f"{m['simd_lanes_f32']} float32 SIMD lanes); threads: {m['threads']}",
        f"- torch {m['torch']}, numba {m['numba']}, onnxruntime {m['onnxruntime']}, "
        f"upconv {m['upconv']}; load average at start: {m['load_average']}; "
        f"OpenMP environment: {m.get('omp_env') or 'defaults'}",
        f"- measured peak sgemm {res.peak_gflops:.1f} GFLOP/s, copy bandwidth "
        f"{res.copy_gbs:.1f} GB/s; input scale {res.scale}; median of {res.repeats} "
        f"interleaved runs (each round in a seeded random order) after warm-up, "
        f"{res.gap_s * 1e3:.0f} ms idle before each run "
        f"({ORT_SETTLE_S * 1e3:.0f} ms after an ONNX Runtime run, whose workers spin longer)"
        + (f", then (untimed) {res.before} right before it, as in a network"
           if res.before else ""),
        f"- the compiled kernel's threads: {m.get('parallel_backend', 'n/a')}",
        "- SP = sub-pixel conv / D-SP deconvolution, NN = resize conv / D-NN deconvolution. "
        "× best baseline: best PyTorch/ONNX Runtime time of the same function divided by this "
        "one (> 1 is faster). GFLOP/s counts the useful multiply-adds (SP: r²K²·Cin·C, NN: "
        "(K+r−1)²·Cin·C per input pixel). % roofline: max(flops/peak, compulsory bytes/"
        "bandwidth) over the time. extra bytes: PyTorch-allocator bytes beyond the output "
        "(n/a: outside PyTorch). † periodic bias not added (favours the baseline). "
        "auto → the candidate it chose (tuned once in this run).", "",
        "## Targets", "",
    ]
    if any(t["target"].endswith(GENERIC) for t in res.targets):
        out += ["Targets marked (generic) apply the same goals to every layer outside the "
                "issue's L1–L6 (the held-out layers, which the kernel was not tuned on).", ""]
    out += ["| layer | target | measured | goal | met |", "|---|---|---:|---:|---|"]
    for t in res.targets:
        out.append(f"| {t['layer']} | {t['target']} | {t['value']} | {t['goal']} | "
                   f"{'yes' if t['met'] else '**no**'} |")
    out += ["", "## All implementations", "", *_table(res.rows)]
    if res.reduced:
        out += ["", f"## Reference algorithms at reduced size (×{res.reduced_scale} per side)", ""]
        out += _table(res.reduced, with_memory=False)
    return "\n".join(out) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # results are for everyone to read (mkstemp makes them 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(res: Results, out_dir: Path, name: str = "latest") -> list[Path]:
    """``<name>.md`` / ``<name>.json`` plus timestamped copies in ``out_dir``; returns paths.

    The dated copies are ``bench-<stamp>.*`` for the default name ``latest`` (the paper's
    layers) and ``<name>-<stamp>.*`` otherwise (e.g. ``heldout-20261121T151326Z.md``).
    """
    return write_document(res.to_json(), markdown(res), out_dir, name, res.machine["date_utc"],
                          dated="bench" if name == "latest" else name)


def write_document(data: dict, text: str, out_dir: Path, name: str, date_utc: str,
                   dated: str | None = None) -> list[Path]:
    """``<name>.md`` (``text``) / ``<name>.json`` (``data``) plus copies stamped with
    ``date_utc`` (``<dated or name>-<stamp>.*``) in ``out_dir``, written atomically."""
    if not name or name != Path(name).name or name.startswith("."):
        raise ValueError(f"name must be a plain file stem, got {name!r}")
    stamp = date_utc.replace(":", "").replace("-", "")
    js = json.dumps(data, indent=1)
    dated = dated or name
    paths = [out_dir / f"{name}.md", out_dir / f"{name}.json",
             out_dir / f"{dated}-{stamp}.md", out_dir / f"{dated}-{stamp}.json"]
    for path, content in zip(paths, (text, js, text, js), strict=True):
        _write_atomic(path, content)
    return paths
