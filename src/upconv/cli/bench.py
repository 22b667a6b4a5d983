"""``upconv bench``: the benchmark suite (layer zoo × PyTorch, ONNX Runtime and upconv paths)."""

from __future__ import annotations

import os
from pathlib import Path

import click

DEFAULT_OUT = "benchmarks/results"


def _layers(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    from ..bench import LAYERS

    ids = [v.strip().upper() for v in value.split(",") if v.strip()]
    bad = [i for i in ids if i not in LAYERS]
    if bad or not ids:
        raise click.BadParameter(f"{', '.join(bad) or 'nothing'} is not a layer id; "
                                 f"use a comma-separated subset of {','.join(LAYERS)}")
    return ids


@click.command()
@click.option("--layers", default="L1,L2,L3,L4,L5,L6", show_default=True, callback=_layers,
              help="Comma-separated layer ids of the zoo.")
@click.option("--repeats", type=click.IntRange(min=1), default=7, show_default=True,
              help="Timed runs per implementation (median reported), after warm-up.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for PyTorch, ONNX Runtime and the kernel [default: torch's].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=DEFAULT_OUT,
              show_default=True, help="Where latest.md / latest.json (and dated copies) go.")
@click.option("--scale", type=click.FloatRange(min=0.01, max=1.0), default=1.0,
              show_default=True, help="Shrink every input by this factor per side.")
@click.option("--reduced-scale", type=click.FloatRange(min=0.01, max=1.0), default=0.125,
              show_default=True, help="Size factor for the slow reference algorithms.")
@click.option("--gap-ms", type=click.FloatRange(min=0), default=50.0, show_default=True,
              help="Idle time before each timed run, so spinning thread pools settle.")
@click.option("--no-onnxruntime", is_flag=True, help="Skip the ONNX Runtime baselines.")
@click.option("--no-references", is_flag=True, help="Skip the reference algorithms.")
@click.option("--quick", is_flag=True,
              help="Smoke run: scale 0.05, 2 repeats, no reference algorithms.")
def bench(layers: list[str], repeats: int, threads: int | None, out_dir: str, scale: float,
          reduced_scale: float, gap_ms: float, no_onnxruntime: bool, no_references: bool,
          quick: bool) -> None:
    """Time every layer of the zoo as C-SP / C-NN (PyTorch, ONNX Runtime) and as D-SP / D-NN
    deconvolutions (upconv), interleaved in one process; write markdown and JSON results."""
    from rich.console import Console

    from ..bench import markdown, run_suite, write_results

    if quick:
        scale, repeats, no_references, gap_ms = min(scale, 0.05), min(repeats, 2), True, 0.0
    console = Console(stderr=True)
    if not ({"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ)):
        console.print("[yellow]note:[/] PyTorch's OpenMP workers spin-wait after each op and "
                      "slow the next non-PyTorch kernel; for the recommended setting run "
                      "OMP_WAIT_POLICY=PASSIVE upconv bench (or python benchmarks/run.py)")
    res = run_suite(layers, repeats=repeats, threads=threads, scale=scale,
                    reduced_scale=reduced_scale, with_ort=not no_onnxruntime,
                    with_references=not no_references, gap_s=gap_ms / 1e3,
                    progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    try:
        paths = write_results(res, Path(out_dir))
    except OSError as err:
        raise click.ClickException(f"cannot write results to {out_dir}: {err}") from None
    click.echo(markdown(res))
    console.print(f"wrote {', '.join(str(p) for p in paths)}")
