"""A wider sweep of the REVD2 Triton kernel's block sizes than its tuner tries, on the GPU
layers where the kernel falls short of cuDNN, to find what the tuner's short candidate list
(:func:`~upconv.kernels.triton_tune.candidate_configs`) should hold.

    python -m upconv.bench.gpu_sweep OUTDIR [--budget-s 150] [--cases G2:fp32,G3:fp32]
    python -m upconv.bench.gpu_sweep OUTDIR --dry-run   # CPU, Triton's interpreter, tiny

Every configuration is timed by the tuner's own :func:`~upconv.kernels.triton_tune.tune`
(output checked against PyTorch's TDC first, then CUDA events after an L2 flush, median of
15), on a channels_last input (the kernel's faster layout on every G layer), beside cuDNN's
conv + pixel shuffle on the same input and the tuner's own choice among its candidates. The
list is the tuner's candidates first, then the grid in a fixed shuffled order, until the
case's share of the time budget is spent; writes ``OUTDIR/sweep.json`` and ``sweep.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

#: The cases swept by default: the D-SP layers and dtypes where the kernel trailed cuDNN's
#: channels_last conv + shuffle or missed its target on the H200 (2026-11-27).
DEFAULT_CASES = ("G3:fp32", "G2:fp32", "G2:fp16", "G1:fp16")


def grid(dtype_bytes: int, cin: int, slots: int, shuffle: tuple[int, int] | None) -> list:
    """Tensor-core configurations worth a try for one call: tiles of 1–4 rows of 64
    phase-grid pixels; 32–256 slots, at most ``slots`` rounded up to a power of two (16 where
    that is less than 32); K steps of 16–64 channels, at most ``cin`` rounded likewise (64 only
    for 16-bit types); 4 or 8 warps; 1–4 pipeline stages; the shuffled store where it applies
    (``shuffle``, a ``(sh, sw)`` that divides the block's slots); at most 32768 accumulator
    elements a block (128 float32 registers a thread at 8 warps)."""
    from ..kernels import triton_plan as tp

    def pow2(v: int) -> int:
        return 1 << max(0, (v - 1).bit_length())

    ks = [k for k in (16, 32, 64) if k <= max(16, pow2(cin)) and (k < 64 or dtype_bytes == 2)]
    ns = [n for n in (32, 64, 128, 256) if n <= max(16, pow2(slots))] or [16]
    out = []
    for bh, bn, bk, warps, stages, shuf in itertools.product(
            (1, 2, 4), ns, ks, (4, 8), (1, 2, 3, 4), (False, True)):
        if shuf and (shuffle is None or bn % (shuffle[0] * shuffle[1])):
            continue
        if bh * 64 * bn > 32768:
            continue
        out.append(tp.Config(bh, 64, bn, bk, True, num_warps=warps, num_stages=stages,
                             flat=True, shuffle=shuf))
    return out


def sweep_case(layer_id: str, dtype_name: str, budget_s: float, scale: float = 1.0,
               device: str = "cuda", limit: int | None = None, seed: int = 0,
               reps: int = 15) -> dict:
    """Time the tuner's candidates, then the grid (shuffled), within ``budget_s`` seconds
    (at most ``limit`` configurations; each the median of ``reps`` timed calls)."""
    import torch
    import torch.nn.functional as F

    from ..kernels import triton_plan as tp
    from ..kernels import triton_tune as tt
    from ..kernels.device_timing import DeviceClock
    from .gpu_suite import DTYPES
    from .gpu_zoo import GPU_LAYERS, gpu_tensors

    layer = GPU_LAYERS[layer_id]
    layer = layer.scaled(scale) if scale != 1.0 else layer
    dtype = DTYPES[dtype_name]
    t = gpu_tensors(layer, dtype, device)
    x = t.x.contiguous(memory_format=torch.channels_last)
    w, b, geo = t.wd_sp, t.bd_sp, t.geo_sp
    out_size = geo.output_size(x.shape[-2], x.shape[-1])
    cin, c, kh, kw = w.shape
    slots = tp.slot_count(c, (kh, kw), geo.stride, geo.padding, out_size)
    shuffle = tp.shuffle_phases((kh, kw), geo.stride, geo.padding, out_size)
    tuner = tt.call_candidates(x, w, geo.stride, geo.padding, out_size)
    rest = [cfg for cfg in grid(dtype.itemsize, cin, slots, shuffle) if cfg not in tuner]
    random.Random(seed).shuffle(rest)
    configs = tuner + rest
    if limit is not None:
        configs = configs[:limit]

    clock = DeviceClock(x.device)

    def timer(fn) -> float:
        return clock.median(fn, reps, warmup=1)

    w_cl = t.w_sp.contiguous(memory_format=torch.channels_last)
    pad = layer.k // 2
    cudnn_ms = 1e3 * timer(
        lambda: F.pixel_shuffle(F.conv2d(x, w_cl, t.b_sp, padding=pad), layer.r))

    timings: dict[str, float | str] = {}
    t0 = time.perf_counter()
    tried = 0
    for cfg in configs:
        if time.perf_counter() - t0 > budget_s:
            break
        try:
            _, got = tt.tune(x, w, b, geo.stride, geo.padding, out_size, [cfg],
                             timer=timer)
        except RuntimeError as exc:  # the one candidate failed: its reason is in the text
            got = {cfg.label(): str(exc)[-300:]}
        timings.update({k: v for k, v in got.items() if not k.endswith(" first call s")})
        tried += 1
    ok = {k: v for k, v in timings.items() if isinstance(v, float)}
    tuner_ok = {c.label(): ok[c.label()] for c in tuner if c.label() in ok}
    best = min(ok, key=ok.__getitem__) if ok else None
    best_tuner = min(tuner_ok, key=tuner_ok.__getitem__) if tuner_ok else None
    return {
        "layer": layer_id, "dtype": dtype_name, "input": list(x.shape),
        "layout": "channels_last", "slots": slots, "shuffle": shuffle,
        "cudnn_cl_ms": round(cudnn_ms, 5), "grid_size": len(configs),
        "tried": tried, "seconds": round(time.perf_counter() - t0, 1),
        "tuner_candidates": [c.label() for c in tuner],
        "best": best, "best_ms": ok.get(best), "best_tuner": best_tuner,
        "best_tuner_ms": tuner_ok.get(best_tuner), "ms": timings,
    }


def to_markdown(results: dict) -> str:
    """The sweep as a report: one summary row per case, then each case's ten fastest."""
    lines = [f"# REVD2 Triton kernel: block-size sweep on {results['device']}", "",
             f"{results['date_utc']}, torch {results['torch']}, triton {results['triton']}. "
             "D-SP on a channels_last input; every configuration checked against PyTorch's "
             "TDC and timed as the tuner times (CUDA events after an L2 flush, median of 15).",
             "", "| layer | dtype | cuDNN conv + shuffle (channels_last) ms | tuner's best "
             "candidate ms | sweep's best ms | sweep's best | tried / grid | s |",
             "|---|---|---:|---:|---:|---|---|---:|"]
    for r in results["cases"]:
        lines.append(f"| {r['layer']} | {r['dtype']} | {r['cudnn_cl_ms']:.3f} | "
                     f"{_fmt(r['best_tuner_ms'])} | {_fmt(r['best_ms'])} | {r['best']} | "
                     f"{r['tried']} / {r['grid_size']} | {r['seconds']} |")
    for r in results["cases"]:
        ok = sorted((v, k) for k, v in r["ms"].items() if isinstance(v, float))
        bad = {k: v for k, v in r["ms"].items() if not isinstance(v, float)}
        lines += ["", f"## {r['layer']} {r['dtype']}: the ten fastest of {len(ok)} that ran "
                  f"({len(bad)} failed or wrong)", "", "| config | ms | tuner candidate |",
                  "|---|---:|---|"]
        for v, k in ok[:10]:
            lines.append(f"| {k} | {v:.4f} | {'yes' if k in r['tuner_candidates'] else ''} |")
        for k, v in list(bad.items())[:5]:
            lines.append(f"| {k} | {v[:120]} | |")
    return "\n".join(lines) + "\n"


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m upconv.bench.gpu_sweep",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for sweep.json and sweep.md")
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES),
                    help="LAYER:DTYPE,… (default %(default)s)")
    ap.add_argument("--budget-s", type=float, default=150.0,
                    help="seconds for all cases together, shared equally (default 150)")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, Triton's interpreter, tiny inputs, three configs a case, one "
                    "timed call each")
    args = ap.parse_args(argv)
    cases = [c.split(":") for c in args.cases.split(",") if c]
    if any(len(c) != 2 for c in cases):
        ap.error(f"--cases takes LAYER:DTYPE pairs separated by commas, got {args.cases!r}")
    if args.budget_s <= 0:
        ap.error("--budget-s must be positive")
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"
    import torch
    import triton

    from .gpu_suite import DTYPES
    from .gpu_zoo import GPU_LAYERS

    unknown = [f"{lid}:{d}" for lid, d in cases if lid not in GPU_LAYERS or d not in DTYPES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}: layers {', '.join(GPU_LAYERS)}, dtypes "
                 f"{', '.join(DTYPES)}")
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device here; --dry-run checks the sweep on the CPU", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"device": "cpu-dry-run" if args.dry_run else torch.cuda.get_device_name(),
               "torch": torch.__version__, "triton": triton.__version__,
               "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cases": []}
    share = args.budget_s / len(cases)
    for lid, d in cases:
        print(f"sweeping {lid} {d} ({share:.0f} s)", flush=True)
        r = sweep_case(lid, d, share, scale=0.02 if args.dry_run else 1.0,
                       device="cpu" if args.dry_run else "cuda",
                       limit=3 if args.dry_run else None, reps=1 if args.dry_run else 15)
        results["cases"].append(r)
        print(f"  cuDNN {r['cudnn_cl_ms']:.3f} ms, tuner's best {r['best_tuner_ms']}, sweep's "
              f"best {r['best_ms']} ({r['best']}), {r['tried']} of {r['grid_size']}",
              flush=True)
        (args.out / "sweep.json").write_text(json.dumps(results, indent=1))
        (args.out / "sweep.md").write_text(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
