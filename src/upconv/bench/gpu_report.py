"""The GPU suite's results as markdown (the JSON holds the same and more)."""

from __future__ import annotations

import statistics
from itertools import combinations

from ..kernels.device_timing import FLUSH_BYTES, LEAD_CYCLES
from .gpu_cases import TOLERANCE
from .gpu_suite import DTYPES


def _f(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _e(v: float | None) -> str:
    return "" if v is None else f"{v:.1e}"


def markdown(res: dict) -> str:
    m = res.get("machine", {})
    out = [
        f"# upconv GPU benchmark: {m.get('device', '?')}", "",
        f"- device: **{m.get('device', '?')}** (compute capability {m.get('capability', 'n/a')}, "
        f"{m.get('sms', 'n/a')} SMs, {m.get('memory_gib', 'n/a')} GiB); driver "
        f"{m.get('driver', '?')}; CUDA {m.get('cuda', '?')}; cuDNN {m.get('cudnn', '?')}; "
        f"PyTorch {m.get('torch', '?')}; Triton {m.get('triton', '?')}; Python "
        f"{m.get('python', '?')}; upconv {m.get('upconv', '?')}; date (UTC) "
        f"{m.get('date_utc', '?')}",
        f"- phases: {', '.join(f'{k}: {v}' for k, v in res.get('phases', {}).items())}",
        f"- measured device copy bandwidth (read + write, `Tensor.copy_` of "
        f"{res.get('copy_megabytes', '?')} MiB, best of 10): "
        f"{_f(res.get('copy_bandwidth_gbs'), 0)} GB/s; input scale {res.get('scale', 1.0)}",
        f"- **ms**: median of {res.get('repeats', '?')} calls, each bracketed by CUDA events "
        f"after zeroing {FLUSH_BYTES // 2**20} MiB (L2 cold) and a {LEAD_CYCLES:.0e}-cycle "
        "device spin that lets the host launch the call ahead (device time, host launch "
        "overhead hidden), interleaved round-robin with the other cases of the layer after 3 "
        "warm-up rounds, `cudnn.benchmark = True`. **b2b ms**: 20 calls back to back between "
        "two events (L2 warm, host overhead included when it exceeds the device time). "
        "× best baseline: best cuDNN / `conv_transpose2d` time of the same function over this "
        "one. **rel err**: max |out − trained form| / max |trained form|, the trained form in "
        "float32 with TF32 off from the same rounded weights; a case is **ok** within "
        + ", ".join(f"{k} {TOLERANCE[v]:g}" for k, v in DTYPES.items() if v in TOLERANCE)
        + " (float32 cuDNN runs in TF32 by PyTorch's default, and so does the kernel's float32 "
        "tensor-core path). † periodic bias not added (favours the baseline; not one of "
        "`auto`'s candidates in its target). auto → the candidate it chose.", "",
        "## Targets", "",
        "| layer | dtype | target | measured | goal | met |", "|---|---|---|---:|---:|---|"]
    for t in res.get("targets", []):
        out.append(f"| {t['layer']} | {t.get('dtype', '')} | {t['target']} | {t['value']} | "
                   f"{t['goal']} | {'yes' if t['met'] else '**no**'} |")
    out += ["", "## Layers", "",
            "| layer | dtype | fn | implementation | ms | × best baseline | b2b ms | rel err "
            "| ok |", "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in res.get("rows", []):
        name = r["case"] + (" †" if r["note"].startswith("periodic") else "") + (
            f" → {r['choice']}" if r.get("choice") else "")
        if r["note"] and not r["note"].startswith("periodic"):
            name += f" ({r['note']})"
        out.append(f"| {r['layer']} | {r['dtype']} | {r['function']} | {name} | "
                   f"{_f(r['ms'])} | {_f(r['ratio_to_best_baseline'], 2)} | "
                   f"{_f(r.get('b2b_ms'))} | {_e(r['rel_error'])} | "
                   f"{'yes' if r['ok'] else '**no**'} |")
    comp = res.get("compile", [])
    if comp:
        out += ["", "## torch.compile (max-autotune-no-cudagraphs) of the trained C-SP, fp16", "",
                "Timed in the same process as the kernel rows beside it.", "",
                "| layer | implementation | ms | × best baseline | compile s | rel err | ok |",
                "|---|---|---:|---:|---:|---:|---|"]
        for r in comp:
            out.append(f"| {r['layer']} | {r['case']} | {_f(r['ms'])} | "
                       f"{_f(r['ratio_to_best_baseline'], 2)} | {_f(r.get('compile_s'), 1)} | "
                       f"{_e(r['rel_error'])} | {'yes' if r['ok'] else '**no**'} |")
    if res.get("espcn"):
        out += ["", "## ESPCN whole networks (bundled weights, 1080 × 1920 output)", "",
                "Under torch.compile the converted model's `Deconv2d` is the operator "
                "`upconv::deconv2d`, which Inductor calls as an extern kernel: the compiled "
                "converted rows run the Triton kernel.", "",
                "| model | input | dtype | mode | case | ms | compile s | rel err | ok |",
                "|---|---|---|---|---|---:|---:|---:|---|"]
        for r in res["espcn"]:
            shape = "×".join(map(str, r["input"]))
            out.append(f"| {r['model']} | {shape} | {r['dtype']} | {r['mode']} | {r['case']} | "
                       f"{_f(r['ms'])} | {_f(r.get('compile_s'), 1)} | {_e(r['rel_error'])} | "
                       f"{'yes' if r['ok'] else '**no**'} |")
    out += _kernels(res.get("espcn", []))
    out += _host(res.get("host"))
    out += _energy(res.get("energy"))
    out += _tuning(res.get("tuning", []))
    return "\n".join(out) + "\n"


def _kernels(rows: list[dict]) -> list[str]:
    """The compiled ESPCN rows' device time by kernel (``kernel_breakdown``)."""
    rows = [r for r in rows if "kernels" in r]
    if not rows:
        return []
    out = ["", "### Compiled ESPCN: device time per call by kernel (torch.profiler)", "",
           "| model | case | kernel | µs per call | launches per call |", "|---|---|---|---:|---:|"]
    for r in rows:
        if isinstance(r["kernels"], str):
            out.append(f"| {r['model']} | {r['case']} | not read: {r['kernels']} | | |")
            continue
        for k in r["kernels"]:
            name = k["name"].replace("|", "\\|")
            out.append(f"| {r['model']} | {r['case']} | `{name}` | {k['us_per_call']:.2f} | "
                       f"{k['count_per_call']:g} |")
    return out


def _host(section: dict | None) -> list[str]:
    """Host µs per call of the CUDA path, split (:mod:`upconv.bench.gpu_host`)."""
    if not section:
        return []
    out = ["", f"## Host time per call, {section['layer']} {section['dtype']} D-SP "
           "(back to back, no sync inside a block, median of 5 × 200 calls)", ""]
    if isinstance(section["rows"], str):
        return [*out, f"Not measured: {section['rows']}."]
    out += ["| case | host µs per call |", "|---|---:|"]
    out += [f"| {r['case']} | {r['us_per_call']:.1f} |" for r in section["rows"]]
    return out


def _energy(section: dict | None) -> list[str]:
    if not section:
        return []
    out = ["", f"## Energy per call (NVML, {section.get('dtype')}) and the cost model "
           f"({section.get('profile')})", ""]
    if section.get("unavailable"):
        return [*out, f"Not measured: {section['unavailable']}."]
    rows = section.get("rows", [])
    out += [f"NVML's total-energy counter (millijoules, whole board) read before and after at "
            f"least {section.get('min_seconds')} s of back-to-back calls; idle power "
            f"{_f(section.get('idle_watts'), 1)} W measured over 1 s with nothing running. "
            "**above idle** subtracts idle power × time: the energy the calls add. **model**: "
            "`upconv.cost` count + estimate for the same layer, operator and dtype.", "",
            "| layer | case | calls | W | µJ/call | above idle µJ/call | model µJ | measured / "
            "model |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r["uj_per_call"] / r["model_uj"] if r["model_uj"] else None
        out.append(f"| {r['layer']} | {r['case']} | {r['calls']} | {_f(r['watts'], 1)} | "
                   f"{_f(r['uj_per_call'], 1)} | {_f(r['uj_per_call_above_idle'], 1)} | "
                   f"{_f(r['model_uj'], 1)} | {_f(ratio, 2)} |")
    out += ["", *explain_energy(rows)]
    return out


def explain_energy(rows: list[dict]) -> list[str]:
    """Where the measured energies and the model agree (ordering of the operators per layer,
    computed) and why they differ (what the model leaves out)."""
    if not rows:
        return []
    agree = total = 0
    for lid in dict.fromkeys(r["layer"] for r in rows):
        sel = [r for r in rows if r["layer"] == lid]
        for a, b in combinations(sel, 2):
            measured = a["uj_per_call"] - b["uj_per_call"]
            model = a["model_uj"] - b["model_uj"]
            if measured and model:
                total += 1
                agree += (measured > 0) == (model > 0)
    ratios = [r["uj_per_call"] / r["model_uj"] for r in rows if r["model_uj"]]
    above = [r["uj_per_call_above_idle"] / r["model_uj"] for r in rows
             if r["model_uj"] and r.get("uj_per_call_above_idle") is not None]
    lines = [
        "**Where they agree.** Of the pairs of operators on the same layer, the model orders "
        f"{agree} of {total} the way the counter does. Measured / model: median "
        f"{_f(statistics.median(ratios), 2)} (range {_f(min(ratios), 2)}–{_f(max(ratios), 2)})"
        + (f"; above idle {_f(statistics.median(above), 2)}" if above else "") + ".",
        "",
        "**Why they differ.** The profile prices a 45 nm chip (Horowitz, ISSCC 2014): an "
        "fp16/fp32 multiply-add at picojoules and every DRAM access at nanojoules, with no "
        "static power. The counter measures a whole board: idle and static power for the "
        "duration of the calls (hence the *above idle* column), HBM instead of DDR, tensor "
        "cores whose energy per multiply-add is far below a 45 nm scalar FPU, clocks that "
        "change with load, and each implementation's real traffic (cuDNN's "
        "implicit-GEMM re-reads, the pixel-shuffle pass, the L2 that absorbs re-reads the "
        "model counts once or not at all). The model counts an algorithm's loop nest, not "
        "these kernels; it is most trustworthy on which operator moves more bytes, least on "
        "absolute joules.",
    ]
    return lines


def _tuning(log: list[dict]) -> list[str]:
    if not log:
        return []
    out = ["", "## Triton kernel tuning", "",
           "Every configuration timed per call shape (CUDA events, median); the JSON has "
           "each candidate's milliseconds or error.", "",
           "| call | choice | best ms | candidates (ok / tried) | seconds |",
           "|---|---|---:|---|---:|"]
    for e in log:
        ms = {k: v for k, v in e.get("ms", {}).items() if not k.endswith("first call s")}
        good = [v for v in ms.values() if isinstance(v, (int, float))]
        short = ";".join(p for p in e["key"].split(";") if p.split("=")[0] in (
            "dtype", "x", "layout", "w", "s"))
        tried = f"{len(good)} / {len(ms)}" if ms else e.get("untuned", "")
        out.append(f"| {short} | {e['choice']} | {_f(min(good)) if good else ''} | {tried} | "
                   f"{_f(e.get('seconds'), 1)} |")
    return out
