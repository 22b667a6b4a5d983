"""``upconv bench``: the benchmark suite (layer zoo × PyTorch, ONNX Runtime and upconv paths).

``--zoo paper`` (default) runs the issue's L1–L6 and writes ``latest.{md,json}``;
``--zoo heldout`` runs the held-out H1–H6 and writes ``heldout.{md,json}``; ``--models``
runs whole networks (trained vs converted, eager and torch.compile) and writes
``models.{md,json}``; ``--device cuda`` runs the GPU suite (:mod:`upconv.bench.gpu_suite`)
and writes ``gpu-<device>.{md,json}``. Everything runs in the process's environment as it is
(no OpenMP variables are needed or set).
"""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_OUT = "benchmarks/results"


def _layers(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """Parse ``--layers`` into ids of either zoo or the GPU zoo; ``None`` (not given) means
    the whole zoo."""
    if value is None:
        return None
    from ..bench import all_layer_ids
    from ..bench.gpu_zoo import GPU_ONLY

    valid = all_layer_ids() + list(GPU_ONLY)
    ids = [v.strip().upper() for v in value.split(",") if v.strip()]
    bad = [i for i in ids if i not in valid]
    if bad or not ids:
        raise click.BadParameter(f"{', '.join(bad) or 'nothing'} is not a layer id; "
                                 f"use a comma-separated subset of {','.join(valid)}")
    return ids


def results_name(zoo: str, layers: list[str]) -> str:
    """File stem of the results: ``heldout`` for the held-out zoo or any held-out layer,
    ``small`` for the small zoo or any small layer, else ``latest`` (never overwritten by a
    run that includes a layer of another zoo)."""
    from ..bench import HELDOUT, SMALL

    if zoo == "heldout" or any(i in HELDOUT for i in layers):
        return "heldout"
    if zoo == "small" or any(i in SMALL for i in layers):
        return "small"
    return "latest"


@click.command()
@click.option("--zoo", type=click.Choice(["paper", "heldout", "small"]), default="paper",
              show_default=True,
              help="Layer set: paper = the issue's L1–L6 (results in latest.md / latest.json); "
                   "heldout = H1–H6, layers the kernel was never tuned on (results in "
                   "heldout.md / heldout.json); small = S1–S3, tile- and crop-sized inputs "
                   "(small.md / small.json).")
@click.option("--layers", default=None, callback=_layers,
              help="Comma-separated layer ids (L1–L6, H1–H6, S1–S3) [default: every layer "
                   "of --zoo]. Any H id writes heldout.md / heldout.json, else any S id "
                   "small.md / small.json.")
@click.option("--repeats", type=click.IntRange(min=1), default=7, show_default=True,
              help="Timed runs per implementation (median reported), after warm-up "
                   "(GPU suite: at least 30 unless --quick; --models: rounds per mode and "
                   "process, ~100 to resolve a 2 % difference).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for PyTorch, ONNX Runtime and the kernel [default: torch's].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=DEFAULT_OUT,
              show_default=True,
              help="Where latest.md / latest.json or heldout.md / heldout.json (and dated "
                   "copies) go.")
@click.option("--scale", type=click.FloatRange(min=0.01, max=1.0), default=1.0,
              show_default=True, help="Shrink every input by this factor per side.")
@click.option("--reduced-scale", type=click.FloatRange(min=0.01, max=1.0), default=0.125,
              show_default=True, help="Size factor for the slow reference algorithms.")
@click.option("--gap-ms", type=click.FloatRange(min=0), default=None,
              help="Idle time before each timed run, so spinning thread pools settle "
                   "[default: 50; 0 for --zoo small, whose tiles run back to back: after an "
                   "idle gap every call starts with cold caches].")
@click.option("--no-interleaved-conv", is_flag=True,
              help="Do not run a PyTorch convolution (the network's previous layer) right "
                   "before each timed call.")
@click.option("--models", default=None, metavar="all|M1,M2,...",
              help="Benchmark whole models instead of layers (trained vs converted, eager and "
                   "torch.compile; results in models.md / models.json).")
@click.option("--algorithm", default="revd2", show_default=True,
              help="With --models: the algorithm the converted models run.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --models: time each model in this many processes (this one and "
                   "fresh ones) and pool the paired speed-ups, with an interval that counts "
                   "the spread between processes.")
@click.option("--kept-processes", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --models: also time each model in this many more fresh processes "
                   "that keep freed memory for reuse (upconv.sr.allocator.keep_freed_memory, "
                   "as upconv upscale --fast does); extra rows, no target judged on them.")
@click.option("--no-onnxruntime", is_flag=True, help="Skip the ONNX Runtime baselines.")
@click.option("--no-references", is_flag=True, help="Skip the reference algorithms.")
@click.option("--quick", is_flag=True,
              help="Smoke run: scale 0.05, 2 repeats, no reference algorithms (GPU: scale "
                   "0.25, 5 repeats, no ESPCN, 0.3 s energy readings).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="cuda: the GPU suite (G1–G4 and L1–L6, cuDNN vs the REVD2 Triton kernel, "
                   "CUDA events, NVML energy), results in gpu-<device>.md / .json.")
@click.option("--phase", "phases", multiple=True,
              type=click.Choice(["eager", "energy", "compile"]),
              help="GPU suite phases to run (repeatable) [default: all three]; each merges "
                   "its part into the results file.")
@click.option("--dtypes", default="fp16,fp32", show_default=True,
              help="GPU suite: comma-separated dtypes among fp16, fp32, bf16.")
@click.option("--energy-seconds", type=click.FloatRange(min=0.05), default=1.0,
              show_default=True, help="GPU suite: seconds of calls per energy reading.")
@click.option("--no-espcn", is_flag=True, help="GPU suite: skip the whole-network ESPCN runs.")
@click.option("--dry-run", is_flag=True,
              help="With --device cuda: run the GPU suite's logic on the CPU instead (host "
                   "clock, no NVML; gpu-cpu-dry-run.md / .json), to check it without a GPU.")
def bench(zoo: str, layers: list[str] | None, repeats: int, threads: int | None, out_dir: str,
          scale: float, reduced_scale: float, gap_ms: float | None,
          no_interleaved_conv: bool,
          models: str | None, algorithm: str, processes: int, kept_processes: int,
          no_onnxruntime: bool,
          no_references: bool,
          quick: bool, device: str, phases: tuple[str, ...], dtypes: str,
          energy_seconds: float, no_espcn: bool, dry_run: bool) -> None:
    """Time every layer of the zoo as C-SP / C-NN (PyTorch, ONNX Runtime) and as D-SP / D-NN
    deconvolutions (upconv), interleaved in one process; write markdown and JSON results.

    --zoo heldout runs the held-out layers H1–H6 (same implementations, generic targets) and
    writes heldout.md / heldout.json, leaving latest.md / latest.json alone; --zoo small runs
    S1–S3 (tile-sized inputs) into small.md / small.json.

    --device cuda runs the GPU suite instead (see docs/gpu.md)."""
    if device == "cuda":
        _bench_gpu(layers, repeats, out_dir, scale, quick, phases, dtypes, energy_seconds,
                   no_espcn, dry_run)
        return
    from rich.console import Console

    from ..bench import ZOOS, markdown, run_suite, write_results
    from ..bench.gpu_zoo import GPU_ONLY

    console = Console(stderr=True)
    progress = lambda msg: console.print(f"[dim]{msg}[/]")  # noqa: E731
    if models is not None:
        _bench_models(models, algorithm, repeats, threads, out_dir, progress, processes,
                      kept_processes)
        return
    if processes != 1:
        raise click.BadParameter("--processes goes with --models", param_hint="--processes")
    if kept_processes:
        raise click.BadParameter("--kept-processes goes with --models",
                                 param_hint="--kept-processes")
    if dry_run:
        raise click.BadParameter("--dry-run goes with --device cuda", param_hint="--dry-run")
    if layers is not None and set(layers) & set(GPU_ONLY):
        raise click.BadParameter("G1–G4 are GPU layers: add --device cuda", param_hint="--layers")
    layers = list(ZOOS[zoo]) if layers is None else layers
    if gap_ms is None:
        gap_ms = 0.0 if results_name(zoo, layers) == "small" else 50.0
    if quick:
        scale, repeats, no_references, gap_ms = min(scale, 0.05), min(repeats, 2), True, 0.0
    res = run_suite(layers, repeats=repeats, threads=threads, scale=scale,
                    reduced_scale=reduced_scale, with_ort=not no_onnxruntime,
                    with_references=not no_references, gap_s=gap_ms / 1e3,
                    interleave_conv=not no_interleaved_conv, progress=progress)
    try:
        paths = write_results(res, Path(out_dir), results_name(zoo, layers))
    except OSError as err:
        raise click.ClickException(f"cannot write results to {out_dir}: {err}") from None
    click.echo(markdown(res))
    console.print(f"wrote {', '.join(str(p) for p in paths)}")


def _bench_models(ids: str, algorithm: str, repeats: int, threads: int | None, out_dir: str,
                  progress, processes: int = 1, kept_processes: int = 0) -> None:
    from ..bench.models import MODELS, markdown, run_models
    from ..bench.report import write_document
    from ..functional import check_algorithm

    chosen = list(MODELS) if ids.strip().lower() == "all" else [
        i.strip().upper() for i in ids.split(",") if i.strip()]
    bad = [i for i in chosen if i not in MODELS]
    if bad or not chosen:
        raise click.BadParameter(f"{', '.join(bad) or 'nothing'} is not a model id; use all "
                                 f"or a comma-separated subset of {','.join(MODELS)}",
                                 param_hint="--models")
    try:
        check_algorithm(algorithm)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--algorithm") from None
    res = run_models(chosen, algorithm, repeats, threads, progress, processes, kept_processes)
    text = markdown(res)
    try:
        paths = write_document(res.to_json(), text, Path(out_dir), "models",
                               res.machine["date_utc"])
    except OSError as err:
        raise click.ClickException(f"cannot write results to {out_dir}: {err}") from None
    click.echo(text)
    progress(f"wrote {', '.join(str(p) for p in paths)}")


def _bench_gpu(layers: list[str] | None, repeats: int, out_dir: str, scale: float, quick: bool,
               phases: tuple[str, ...], dtypes: str, energy_seconds: float,
               no_espcn: bool, dry_run: bool) -> None:
    """``upconv bench --device cuda``: the GPU suite (:mod:`upconv.bench.gpu_suite`)."""
    from rich.console import Console

    from ..bench.gpu_suite import COMPILE_LAYERS, DTYPES, PHASES, run_gpu_suite
    from ..bench.gpu_zoo import GPU_LAYERS

    console = Console(stderr=True)
    kinds = [d.strip() for d in dtypes.split(",") if d.strip()]
    if not kinds or any(d not in DTYPES for d in kinds):
        raise click.BadParameter(f"use a comma-separated subset of {', '.join(DTYPES)}",
                                 param_hint="--dtypes")
    bad = [i for i in layers or () if i not in GPU_LAYERS]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)} is not in the GPU suite; use a subset of "
                                 f"{','.join(GPU_LAYERS)}", param_hint="--layers")
    if quick:
        scale, repeats, energy_seconds, no_espcn = min(scale, 0.25), min(repeats, 5), 0.3, True
    try:
        json_path, md_path = run_gpu_suite(
            Path(out_dir), phases=phases or PHASES, layers=layers or tuple(GPU_LAYERS),
            compile_layers=[i for i in COMPILE_LAYERS if layers is None or i in layers],
            dtypes=kinds, repeats=max(repeats, 30) if not quick else repeats, scale=scale,
            espcn=not no_espcn, energy_seconds=energy_seconds,
            device="cpu" if dry_run else "cuda",
            progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    except RuntimeError as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"cannot write results to {out_dir}: {err}") from None
    click.echo(md_path.read_text())
    console.print(f"wrote {json_path}, {md_path}")
