"""The GPU benchmark suite (``upconv bench --device cuda``): three phases, one results file.

* ``eager``: every layer of :data:`~upconv.bench.gpu_zoo.GPU_LAYERS` in float16 and float32,
  every case of :mod:`~upconv.bench.gpu_cases` checked against the trained form, then timed
  interleaved with CUDA events (median of ``repeats``, L2 flushed before each call), plus
  back-to-back throughput; the device's copy bandwidth; the bundled ESPCN ×2 / ×3 whole
  networks on a 1080p-output input, trained vs converted.
* ``energy``: NVML's energy counter around ≥ 1 s of calls of C-SP, C-NN,
  ``conv_transpose2d`` and REVD2 on G1–G4 (float16), beside the cost model's estimate.
* ``compile``: ``torch.compile(mode="max-autotune-no-cudagraphs")`` of the trained C-SP
  layer (channels_last float16) on G1, G2, G4 and ESPCN compiled, each re-timed in the same
  process against the kernel.

Each phase merges its part into ``gpu-<device>.json`` (written atomically after every layer,
so a phase cut short by a timeout keeps what it measured) and re-renders ``gpu-<device>.md``.
On a CPU the same code runs with the host clock (a dry run of the logic; no NVML).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..kernels.device_timing import DeviceClock
from .gpu_cases import (
    CONVT_DSP_NO_BIAS,
    TOLERANCE,
    GpuCase,
    baseline_cases,
    expected,
    relative_error,
    upconv_cases,
)
from .gpu_zoo import GPU_LAYERS, GPU_ONLY, gpu_tensors, io_bytes

PHASES = ("eager", "energy", "compile")
DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}
Progress = Callable[[str], None]


@dataclass
class GpuRow:
    """One implementation of one layer function in one dtype, checked and timed."""

    layer: str
    dtype: str
    function: str
    case: str
    family: str
    ms: float | None
    runs: int
    rel_error: float | None
    ok: bool
    ratio_to_best_baseline: float | None = None
    b2b_ms: float | None = None
    note: str = ""
    choice: str = ""


def device_slug(name: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` → ``"nvidia-h100-80gb-hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def machine_info(device: torch.device) -> dict:
    """Device, driver, CUDA, cuDNN, PyTorch and Triton versions, date."""
    from .. import __version__

    info: dict = {"python": platform.python_version(), "torch": torch.__version__,
                  "upconv": __version__,
                  "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "not installed"
    if device.type != "cuda":
        info.update(device=f"CPU ({platform.processor() or platform.machine()}), dry run",
                    driver="n/a", cuda="n/a", cudnn="n/a")
        return info
    props = torch.cuda.get_device_properties(device)
    info.update(device=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(), capability=f"{props.major}.{props.minor}",
                sms=props.multi_processor_count,
                memory_gib=round(props.total_memory / 2**30, 1), driver=_driver_version())
    return info


def _driver_version() -> str:
    try:
        from .energy import NvmlCounter

        return NvmlCounter(0).driver_version()
    except Exception:
        pass
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


# --- results file ------------------------------------------------------------------------


def results_paths(out_dir: Path, device: torch.device) -> tuple[Path, Path]:
    name = machine_info(device)["device"] if device.type == "cuda" else "cpu-dry-run"
    stem = f"gpu-{device_slug(name)}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"


def load_results(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_results(results: dict, json_path: Path, md_path: Path) -> None:
    """Targets re-evaluated, then JSON and markdown written atomically."""
    from .gpu_report import markdown
    from .report import _write_atomic

    results["targets"] = evaluate_gpu_targets(results)
    _write_atomic(json_path, json.dumps(results, indent=1, default=str))
    _write_atomic(md_path, markdown(results))


# --- eager phase -------------------------------------------------------------------------


def _check(cases: list[GpuCase], want: dict, dtype: torch.dtype) -> dict[str, tuple]:
    """Each case's ``(relative error, ok, error text)`` against the trained form."""
    out = {}
    for case in cases:
        try:
            with torch.no_grad():
                got = case.fn()
            err = relative_error(got, want[case.expected_key])
            out[case.name] = (err, err <= TOLERANCE[dtype], "")
        except Exception as exc:
            out[case.name] = (None, False, f"{type(exc).__name__}: {str(exc)[:300]}")
    return out


def measure_cases(layer_id: str, dtype_name: str, cases: list[GpuCase], want: dict,
                  clock: DeviceClock, repeats: int, b2b_calls: int) -> list[GpuRow]:
    """Check, then time (interleaved), every case that ran; rows with ratios to the best
    baseline of the same function."""
    dtype = DTYPES[dtype_name]
    checks = _check(cases, want, dtype)
    runnable = {c.name: c.fn for c in cases if checks[c.name][2] == ""}
    times = clock.interleaved(runnable, repeats) if runnable else {}
    rows = []
    for case in cases:
        err, ok, failure = checks[case.name]
        ms = statistics.median(times[case.name]) * 1e3 if case.name in times else None
        b2b = clock.back_to_back(case.fn, b2b_calls) * 1e3 if case.name in times else None
        rows.append(GpuRow(layer_id, dtype_name, case.function, case.name, case.family, ms,
                           len(times.get(case.name, [])), err, ok, None, b2b,
                           failure or case.note, case.choice() if case.choice and ok else ""))
    best: dict[str, float] = {}
    for r in rows:
        if r.family == "baseline" and r.ok and r.ms is not None:
            best[r.function] = min(best.get(r.function, r.ms), r.ms)
    for r in rows:
        if r.ms is not None and r.function in best:
            r.ratio_to_best_baseline = best[r.function] / r.ms
    return rows


def run_eager(results: dict, device: torch.device, layers: Sequence[str],
              dtypes: Sequence[str], repeats: int, save: Callable[[], None],
              progress: Progress, scale: float = 1.0, b2b_calls: int = 20,
              espcn: bool = True) -> None:
    """The eager phase into ``results`` (``save()`` after each layer)."""
    clock = DeviceClock(device)
    torch.backends.cudnn.benchmark = True
    progress("measuring the device's copy bandwidth")
    results["copy_megabytes"] = 1024 if clock.cuda else 64
    results["copy_bandwidth_gbs"] = clock.copy_bandwidth(results["copy_megabytes"]) / 1e9
    results["rows"] = [r for r in results.get("rows", [])
                       if (r["layer"], r["dtype"]) not in {(i, d) for i in layers for d in dtypes}]
    results["scale"] = scale
    results["repeats"] = repeats
    # the GPU-sized layers in every dtype first, then the whole networks, then the paper's
    # layers: what the targets need most comes first if a time limit cuts the phase short
    first = [i for i in layers if i in GPU_ONLY]
    for lid, dtype_name in ((i, d) for d in dtypes for i in first):
        progress(f"{lid} {dtype_name}: checking and timing")
        _eager_layer(results, lid, dtype_name, device, clock, repeats, scale, b2b_calls)
        save()
    if espcn:
        results["espcn"] = [r for r in results.get("espcn", []) if r.get("mode") != "eager"]
        for dtype_name in dtypes:
            progress(f"ESPCN whole networks, {dtype_name}, eager")
            results["espcn"] += espcn_rows(device, DTYPES[dtype_name], dtype_name, clock,
                                           repeats, scale, compiled=False)
            save()
    rest = [i for i in layers if i not in GPU_ONLY]
    for lid, dtype_name in ((i, d) for d in dtypes for i in rest):
        progress(f"{lid} {dtype_name}: checking and timing")
        _eager_layer(results, lid, dtype_name, device, clock, repeats, scale, b2b_calls)
        save()
    if layers:  # where a small layer's host time goes (the b2b column's excess)
        from .gpu_host import host_costs

        lid = "L1" if "L1" in layers else layers[0]
        layer = GPU_LAYERS[lid].scaled(scale) if scale != 1.0 else GPU_LAYERS[lid]
        progress(f"{lid} {dtypes[0]}: host time per call")
        results["host"] = {"layer": lid, "dtype": dtypes[0],
                           "rows": host_costs(layer, DTYPES[dtypes[0]], device)}
        save()


def _eager_layer(results: dict, lid: str, dtype_name: str, device: torch.device,
                 clock: DeviceClock, repeats: int, scale: float, b2b_calls: int) -> None:
    """One layer in one dtype: every case checked and timed, rows added to ``results``."""
    layer = GPU_LAYERS[lid].scaled(scale) if scale != 1.0 else GPU_LAYERS[lid]
    dtype = DTYPES[dtype_name]
    t = gpu_tensors(layer, dtype, device)
    rows = measure_cases(lid, dtype_name, baseline_cases(layer, t) + upconv_cases(t),
                         expected(layer, t), clock, repeats, b2b_calls)
    results["rows"] += [asdict(r) for r in rows]
    results["io_bytes"] = {**results.get("io_bytes", {}),
                           f"{lid} {dtype_name}": io_bytes(layer, dtype)}
    _record_tuning(results)


def _record_tuning(results: dict) -> None:
    """The Triton kernel's tuning log so far (per-candidate milliseconds, choices)."""
    from ..kernels import triton_tune

    if triton_tune.TUNING_LOG:
        known = {e["key"] for e in results.get("tuning", [])}
        results["tuning"] = results.get("tuning", []) + [
            e for e in triton_tune.TUNING_LOG if e["key"] not in known]


ESPCN_INPUTS = {"espcn-x2": (540, 960), "espcn-x3": (360, 640)}  # → 1080 × 1920 outputs


def espcn_rows(device: torch.device, dtype: torch.dtype, dtype_name: str, clock: DeviceClock,
               repeats: int, scale: float, compiled: bool) -> list[dict]:
    """The bundled ESPCN ×2 / ×3, trained vs converted to REVD2, eager (and compiled)."""

    rows = []
    for name, (h, w) in ESPCN_INPUTS.items():
        h, w = max(8, round(h * scale)), max(8, round(w * scale))
        rows += _espcn_model(name, (h, w), device, dtype, dtype_name, clock, repeats, compiled)
    return rows


def _espcn_model(name: str, size: tuple[int, int], device: torch.device, dtype: torch.dtype,
                 dtype_name: str, clock: DeviceClock, repeats: int, compiled: bool
                 ) -> list[dict]:
    from ..sr import load_pretrained

    trained = load_pretrained(name).to(device=device, dtype=dtype).eval()
    converted = load_pretrained(name).to_deconv("revd2").to(device=device, dtype=dtype).eval()
    x = torch.rand(1, 1, *size, generator=torch.Generator().manual_seed(0)).to(
        device=device, dtype=dtype)
    fns: dict[str, Callable[[], torch.Tensor]] = {
        "trained (eager)": lambda: trained(x), "converted revd2 (eager)": lambda: converted(x)}
    compile_s = {}
    if compiled:
        for label, model in (("trained (torch.compile)", trained),
                             ("converted revd2 (torch.compile)", converted)):
            fn = torch.compile(model)
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(x)
            clock.sync()
            compile_s[label] = time.perf_counter() - t0
            fns[label] = lambda f=fn: f(x)
    with torch.no_grad():
        want = trained(x).float()
    errors = {}
    for label, fn in fns.items():
        with torch.no_grad():
            errors[label] = relative_error(fn(), want)
    times = clock.interleaved(fns, repeats)
    kernels = {label: kernel_breakdown(fns[label], device) for label in compile_s}
    return [{"model": name, "dtype": dtype_name, "input": [1, 1, *size],
             "mode": "compiled" if compiled else "eager", "case": label,
             "ms": statistics.median(times[label]) * 1e3, "rel_error": errors[label],
             "ok": errors[label] <= TOLERANCE[dtype], "compile_s": compile_s.get(label),
             **({"kernels": kernels[label]} if label in kernels else {})}
            for label in fns]


def kernel_breakdown(fn: Callable[[], object], device: torch.device, calls: int = 20,
                     top: int = 8) -> list[dict] | str:
    """Where a call's device time goes: ``[{"name", "us_per_call", "count_per_call"}]``, the
    ``top`` kernels by self device time over ``calls`` calls (torch.profiler; CPU ops on a
    CPU device), or why it could not be read."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    try:
        with torch.no_grad():
            fn()
            with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]
                         ) as prof:
                for _ in range(calls):
                    fn()
                if cuda:
                    torch.cuda.synchronize(device)
        events = [(e.key, (e.self_device_time_total if cuda else e.self_cpu_time_total),
                   e.count) for e in prof.key_averages()]
    except Exception as err:  # a diagnostic: never the reason a run fails
        return f"{type(err).__name__}: {err}"[:300]
    events = sorted((e for e in events if e[1] > 0), key=lambda e: -e[1])[:top]
    return [{"name": k[:120], "us_per_call": round(t / calls, 2),
             "count_per_call": round(c / calls, 2)} for k, t, c in events]


# --- energy phase ------------------------------------------------------------------------

ENERGY_PROFILE = "horowitz-45nm"


def energy_cases(layer, t) -> list[tuple[str, str, Callable[[], torch.Tensor], dict]]:
    """(name, operator, call, cost-model ``count`` arguments) of what the energy phase reads."""
    from ..functional import deconv2d

    by_name = {c.name: c for c in baseline_cases(layer, t)}
    dims = dict(in_channels=layer.cin, out_channels=layer.c, kernel_size=layer.k,
                scale=layer.r, height=layer.h, width=layer.w, batch=layer.n)
    sp, nn = t.geo_sp, t.geo_nn
    x_cl = t.x.contiguous(memory_format=torch.channels_last)
    return [
        ("C-SP cuDNN (NCHW)", "C-SP", by_name["cuDNN conv+pixel_shuffle (NCHW)"].fn,
         dict(op="C-SP", **dims)),
        ("C-SP cuDNN (channels_last)", "C-SP",
         by_name["cuDNN conv+pixel_shuffle (channels_last)"].fn, dict(op="C-SP", **dims)),
        ("C-NN cuDNN", "C-NN", by_name["cuDNN interpolate(nearest)+conv"].fn,
         dict(op="C-NN", **dims)),
        ("conv_transpose2d (D-SP)", "D-SP", by_name[CONVT_DSP_NO_BIAS].fn,
         dict(op="D-SP", algorithm="stdd", **dims)),
        ("REVD2 Triton (D-SP)", "D-SP",
         lambda: deconv2d(t.x, t.wd_sp, t.bd_sp, sp.stride, sp.padding, algorithm="revd2"),
         dict(op="D-SP", algorithm="revd2", **dims)),
        # like for like with cuDNN's channels_last row: each side also at its faster layout
        ("REVD2 Triton (D-SP, channels_last)", "D-SP",
         lambda: deconv2d(x_cl, t.wd_sp, t.bd_sp, sp.stride, sp.padding, algorithm="revd2"),
         dict(op="D-SP", algorithm="revd2", **dims)),
        ("REVD2 Triton (D-NN)", "D-NN",
         lambda: deconv2d(t.x, t.wd_nn, t.b_nn, nn.stride, nn.padding, algorithm="revd2"),
         dict(op="D-NN", algorithm="revd2", **dims)),
    ]


def run_energy(results: dict, device: torch.device, layers: Sequence[str], save: Callable,
               progress: Progress, min_seconds: float = 1.0, scale: float = 1.0,
               counter=None, dtype_name: str = "fp16") -> None:
    """The energy phase: µJ per call measured (NVML) and estimated (cost model)."""
    from ..cost import count, estimate, load_profile
    from .energy import NvmlCounter, idle_power, measure_energy, nvml_unavailable_reason

    section: dict = {"dtype": dtype_name, "profile": ENERGY_PROFILE, "rows": [],
                     "min_seconds": min_seconds}
    results["energy"] = section
    if counter is None:
        reason = (nvml_unavailable_reason() if device.type == "cuda"
                  else "not a CUDA device (dry run)")
        if reason:
            section["unavailable"] = reason
            save()
            return
        counter = NvmlCounter(device.index or 0)
    clock = DeviceClock(device)
    progress("idle power (1 s)")
    section["idle_watts"] = idle_power(counter, 1.0)
    profile = load_profile(ENERGY_PROFILE)
    dtype = DTYPES[dtype_name]
    cost_dtype = {"fp16": "float16", "fp32": "float32", "bf16": "float16"}[dtype_name]
    for lid in layers:
        layer = GPU_LAYERS[lid].scaled(scale) if scale != 1.0 else GPU_LAYERS[lid]
        t = gpu_tensors(layer, dtype, device)
        for name, op, fn, dims in energy_cases(layer, t):
            progress(f"{lid}: energy of {name}")
            with torch.no_grad():
                fn()  # tunes / compiles outside the reading
                reading = measure_energy(fn, counter, clock.sync, min_seconds,
                                         section["idle_watts"])
            est = estimate(count(dtype=cost_dtype, **dims), profile)
            section["rows"].append({
                "layer": lid, "case": name, "op": op, "calls": reading.calls,
                "seconds": reading.seconds, "millijoules": reading.millijoules,
                "uj_per_call": reading.uj_per_call,
                "uj_per_call_above_idle": reading.uj_per_call_above_idle,
                "watts": reading.watts, "model_uj": est.energy_j * 1e6,
                "model_compute_uj": est.compute_j * 1e6,
                "model_offchip_uj": est.offchip_j * 1e6})
        del t
        save()


# --- compile phase -----------------------------------------------------------------------

COMPILE_LAYERS = ("G1", "G2", "G4")


def run_compile(results: dict, device: torch.device, layers: Sequence[str], repeats: int,
                save: Callable, progress: Progress, scale: float = 1.0,
                espcn: bool = True) -> None:
    """torch.compile max-autotune of the trained C-SP (channels_last float16) against the
    kernel in the same process; ESPCN whole networks compiled."""
    clock = DeviceClock(device)
    torch.backends.cudnn.benchmark = True
    results["compile"] = [r for r in results.get("compile", []) if r["layer"] not in layers]
    for lid in layers:
        layer = GPU_LAYERS[lid].scaled(scale) if scale != 1.0 else GPU_LAYERS[lid]
        progress(f"{lid}: torch.compile(mode='max-autotune-no-cudagraphs') of C-SP")
        results["compile"] += _compile_layer(lid, layer, device, clock, repeats)
        save()
    if espcn:
        results["espcn"] = [r for r in results.get("espcn", []) if r.get("mode") != "compiled"]
        for name, (h, w) in ESPCN_INPUTS.items():  # saved model by model: compiles are slow
            progress(f"ESPCN {name}, fp16, torch.compile")
            size = (max(8, round(h * scale)), max(8, round(w * scale)))
            results["espcn"] += _espcn_model(name, size, device, torch.float16, "fp16", clock,
                                             repeats, compiled=True)
            save()


def _compile_layer(lid: str, layer, device: torch.device, clock: DeviceClock,
                   repeats: int) -> list[dict]:
    """One layer's compiled C-SP against cuDNN and the kernel, same process (fp16)."""
    import torch.nn.functional as F

    from ..functional import deconv2d

    t = gpu_tensors(layer, torch.float16, device)
    x_cl = t.x.contiguous(memory_format=torch.channels_last)
    w_cl = t.w_sp.contiguous(memory_format=torch.channels_last)
    r, pad, sp = layer.r, layer.k // 2, t.geo_sp

    def trained(x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, w_cl, t.b_sp, padding=pad), r)

    compiled = torch.compile(trained, mode="max-autotune-no-cudagraphs")
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled(x_cl)
    clock.sync()
    compile_s = time.perf_counter() - t0
    cases = [
        GpuCase("torch.compile max-autotune C-SP (channels_last)", "SP", "baseline",
                lambda: compiled(x_cl)),
        GpuCase("cuDNN conv+pixel_shuffle (channels_last)", "SP", "baseline",
                lambda: trained(x_cl)),
        GpuCase("upconv revd2 (D-SP)", "SP", "upconv",
                lambda: deconv2d(t.x, t.wd_sp, t.bd_sp, sp.stride, sp.padding)),
        GpuCase("upconv revd2 (D-SP, channels_last)", "SP", "upconv",
                lambda: deconv2d(x_cl, t.wd_sp, t.bd_sp, sp.stride, sp.padding)),
    ]
    rows = measure_cases(lid, "fp16", cases, expected(layer, t), clock, repeats, 20)
    return [{**asdict(row), "compile_s": compile_s if row.case.startswith("torch.compile")
             else None} for row in rows]


# --- targets -----------------------------------------------------------------------------


def _ms(rows: list[dict], layer: str, dtype: str, case: str) -> float | None:
    return next((r["ms"] for r in rows if r["layer"] == layer and r["dtype"] == dtype
                 and r["case"] == case and r["ok"] and r["ms"] is not None), None)


def _best(rows: list[dict], layer: str, dtype: str, cases: Sequence[str]) -> float | None:
    return min((v for v in (_ms(rows, layer, dtype, c) for c in cases) if v is not None),
               default=None)


def evaluate_gpu_targets(results: dict) -> list[dict]:
    """The issue's targets with the measured value and whether each is met (only from cases
    whose output was checked correct)."""
    out: list[dict] = []
    rows = results.get("rows", [])

    def add(layer: str, what: str, value: float | None, goal: float, dtype: str = "") -> None:
        if value is not None:
            out.append({"layer": layer, "dtype": dtype, "target": what,
                        "value": round(value, 3), "goal": goal, "met": value >= goal})

    def ratio(num: float | None, den: float | None) -> float | None:
        return None if num is None or not den else num / den

    for lid in GPU_LAYERS:
        for dt in ("fp16", "fp32"):
            if not any(r["layer"] == lid and r["dtype"] == dt for r in rows):
                continue
            # like for like: each side's faster input layout (cuDNN's channels_last case gets
            # a channels_last input, and so does the kernel's)
            dsp = _best(rows, lid, dt, ("upconv revd2 (D-SP)",
                                        "upconv revd2 (D-SP, channels_last)"))
            dnn = _ms(rows, lid, dt, "upconv revd2 (D-NN)")
            best_csp = _best(rows, lid, dt, ("cuDNN conv+pixel_shuffle (NCHW)",
                                             "cuDNN conv+pixel_shuffle (channels_last)"))
            what = "D-SP revd2 vs best cuDNN C-SP (each its faster input layout)"
            if dt == "fp16":
                goal = 2.0 if lid in ("G1", "G2", "G4") else 1.2 if lid == "G3" else 1.0
                add(lid, what, ratio(best_csp, dsp), goal, dt)
            elif lid in ("G1", "G2", "G4"):
                add(lid, what, ratio(best_csp, dsp), 1.5, dt)
            if lid in ("G1", "G2", "G4"):
                add(lid, "D-NN revd2 vs cuDNN resize-conv", ratio(
                    _ms(rows, lid, dt, "cuDNN interpolate(nearest)+conv"), dnn), 4.0, dt)
                add(lid, "D-NN revd2 vs conv_transpose2d", ratio(
                    _ms(rows, lid, dt, "conv_transpose2d (D-NN weights)"), dnn), 2.0, dt)
            for fun in ("SP", "NN"):
                autos = [r["ms"] for r in rows if r["layer"] == lid and r["dtype"] == dt
                         and r["case"].startswith(f"upconv auto (D-{fun}") and r["ok"]
                         and r["ms"] is not None]
                # candidates compute the layer: not the † row, which leaves out the D-SP
                # weights' periodic bias (auto's own stdd candidate adds it)
                cands = [r["ms"] for r in rows if r["layer"] == lid and r["dtype"] == dt
                         and r["function"] == fun and r["ok"] and r["ms"] is not None
                         and not r["case"].startswith("upconv auto")
                         and r["case"] != CONVT_DSP_NO_BIAS]
                if autos and cands:
                    add(lid, f"auto (D-{fun}) vs best candidate", min(cands) / min(autos),
                        0.95, dt)
    g1 = _best(rows, "G1", "fp16", ("upconv revd2 (D-SP)", "upconv revd2 (D-SP, channels_last)"))
    bw, nbytes = results.get("copy_bandwidth_gbs"), results.get("io_bytes", {}).get("G1 fp16")
    if g1 is not None and bw and nbytes:
        add("G1", "D-SP revd2 % of memory bound", 100 * nbytes / (bw * 1e9) / (g1 * 1e-3),
            40.0, "fp16")
    comp = results.get("compile", [])
    for lid in COMPILE_LAYERS:
        tc = next((r["ms"] for r in comp if r["layer"] == lid and r["ok"]
                   and r["case"].startswith("torch.compile")), None)
        mine = min((r["ms"] for r in comp if r["layer"] == lid and r["ok"]
                    and r["case"].startswith("upconv revd2 (D-SP")), default=None)
        add(lid, "D-SP revd2 vs torch.compile max-autotune C-SP", ratio(tc, mine), 1.3, "fp16")
    for mode in ("eager", "compiled"):
        for model in ESPCN_INPUTS:
            for dt in ("fp16", "fp32"):
                sel = [r for r in results.get("espcn", []) if r["model"] == model
                       and r["mode"] == mode and r["dtype"] == dt and r["ok"]]
                tr = next((r["ms"] for r in sel if r["case"].startswith("trained")
                           and (mode == "eager") == r["case"].endswith("(eager)")), None)
                cv = next((r["ms"] for r in sel if r["case"].startswith("converted")
                           and (mode == "eager") == r["case"].endswith("(eager)")), None)
                add(model, f"converted vs trained whole network ({mode})", ratio(tr, cv), 1.0,
                    dt)
    energy = results.get("energy", {}).get("rows", [])
    for lid in ("G1", "G2", "G4"):
        # each side at its less costly input layout, as the speed targets compare them
        revd2 = [r["uj_per_call"] for r in energy if r["layer"] == lid
                 and r["case"].startswith("REVD2 Triton (D-SP")]
        csp = [r["uj_per_call"] for r in energy if r["layer"] == lid and r["op"] == "C-SP"]
        add(lid, "energy per call: best C-SP / best REVD2 D-SP (> 1: REVD2 lower)",
            ratio(min(csp) if csp else None, min(revd2) if revd2 else None), 1.0, "fp16")
    return out


# --- entry -------------------------------------------------------------------------------


def run_gpu_suite(out_dir: Path, phases: Sequence[str] = PHASES,
                  layers: Sequence[str] = tuple(GPU_LAYERS), dtypes: Sequence[str] = ("fp16",
                                                                                      "fp32"),
                  repeats: int = 30, device: str = "cuda", scale: float = 1.0,
                  compile_layers: Sequence[str] = COMPILE_LAYERS, espcn: bool = True,
                  energy_seconds: float = 1.0, progress: Progress = lambda msg: None,
                  counter=None, b2b_calls: int = 20) -> tuple[Path, Path]:
    """Run ``phases`` and merge them into ``gpu-<device>.json`` / ``.md`` in ``out_dir``."""
    bad = [p for p in phases if p not in PHASES]
    if bad:
        raise ValueError(f"unknown phase(s) {bad}; choose from {', '.join(PHASES)}")
    unknown = [i for i in (*layers, *compile_layers) if i not in GPU_LAYERS]
    if unknown:
        raise ValueError(f"unknown layer id(s) {unknown}; choose from {', '.join(GPU_LAYERS)}")
    if any(d not in DTYPES for d in dtypes):
        raise ValueError(f"dtypes must be among {', '.join(DTYPES)}, got {list(dtypes)}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is available here (upconv bench --device cuda "
                           "--dry-run checks the suite's logic on the CPU)")
    json_path, md_path = results_paths(out_dir, dev)
    results = load_results(json_path)
    results["machine"] = machine_info(dev)
    results.setdefault("phases", {})

    def save() -> None:
        save_results(results, json_path, md_path)

    for phase in phases:
        results["phases"][phase] = "running"
        save()
        t0 = time.perf_counter()
        if phase == "eager":
            run_eager(results, dev, layers, dtypes, repeats, save, progress, scale,
                      b2b_calls, espcn)
        elif phase == "energy":
            run_energy(results, dev, [i for i in layers if i in GPU_ONLY], save, progress,
                       energy_seconds, scale, counter)
        else:
            run_compile(results, dev, compile_layers, repeats, save, progress, scale, espcn)
        _record_tuning(results)
        results["phases"][phase] = f"done in {time.perf_counter() - t0:.1f} s"
        save()
    return json_path, md_path


def gpu_check_environment() -> dict:
    """What the GPU check script prints first: versions and what is importable."""
    info = machine_info(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    for name in ("pynvml", "numba", "onnxruntime", "platformdirs", "tomli_w"):
        try:
            __import__(name)
            info[name] = "yes"
        except ImportError:
            info[name] = "no"
    info["cuda_available"] = torch.cuda.is_available()
    info["env"] = {k: v for k, v in os.environ.items() if k.startswith(("UPCONV_", "TRITON_"))}
    return info
