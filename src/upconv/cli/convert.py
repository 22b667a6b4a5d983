"""``upconv convert``: convert a model's upsampling layers to deconvolutions and save it."""

from __future__ import annotations

from pathlib import Path

import click

from ..algorithms import ALGORITHMS

DEFAULT_SPATIAL = (64, 64)
#: checkpoint files read with upconv.load_model (architecture detected by spandrel)
CHECKPOINTS = (".pth", ".pt", ".ckpt", ".safetensors")


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1x1x321x481"`` → ``(1, 1, 321, 481)``; a BadParameter naming the format otherwise."""
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise click.BadParameter(f"{text!r} is not N x C x H x W with positive integers, "
                                 "e.g. 1x1x321x481", param_hint="--input-shape")
    return shape


def _bundled_names() -> tuple[str, ...]:
    from ..sr.pretrained import PRETRAINED

    return tuple(PRETRAINED)


def _bundled_model(name: str, random_weights: bool):
    """The bundled ESPCN ``name`` (eval mode) and a note when its weights are random."""
    from ..sr.models import ESPCN
    from ..sr.pretrained import PRETRAINED, load_pretrained, pretrained_path

    scale, upsampler = PRETRAINED[name]
    if random_weights:
        return ESPCN(scale, upsampler).eval(), "weights are random (--random-weights)"
    if not pretrained_path(name).is_file():
        raise click.ClickException(
            f"the bundled weights for {name!r} are missing from this installation; pass "
            "--random-weights to convert the untrained architecture")
    return load_pretrained(name), None


def _checkpoint_model(path: Path, shape):
    """A checkpoint's model (spandrel detects the architecture) and its example input."""
    import torch

    from ..load import load_model

    try:
        loaded = load_model(path)
    except ImportError as err:
        raise click.ClickException(str(err)) from None
    note = (f"{loaded.architecture} ×{loaded.scale}, {loaded.input_channels} → "
            f"{loaded.output_channels} channels (detected by spandrel)")
    if shape is None:
        return loaded.model, loaded.example_input(*DEFAULT_SPATIAL), note
    return loaded.model, torch.rand(*shape, generator=torch.Generator().manual_seed(0)), note


def _check_export(model, proto, x, report) -> None:
    """The written graph must compute what the PyTorch model computes (ONNX Runtime, same
    input): catches what the exporter might change."""
    import numpy as np
    import torch

    from ..convert import VerificationError
    from ..convert.onnx_convert import run_onnx
    from ..convert.torch_convert import first_output
    from ..convert.verify import output_errors, tolerance

    feeds = {proto.graph.input[0].name: x.numpy()}
    with torch.no_grad():
        want = first_output(model(x.clone())).double().numpy()
    got = np.asarray(run_onnx(proto, feeds)[0], dtype=np.float64)
    _, rel = output_errors(want, got)
    if not rel <= tolerance(4):
        raise VerificationError(f"the exported ONNX graph differs from the PyTorch model: max "
                                f"rel error {rel:.3g} (ONNX Runtime, input "
                                f"{'x'.join(map(str, x.shape))})", report)
    report.notes.append(f"exported graph checked in ONNX Runtime: max rel error {rel:.3g}")


def _convert_torch(source, out, algorithm, shape, verify, random_weights):
    """A bundled model or a checkpoint: converted in PyTorch, then exported to ONNX."""
    import torch

    from ..convert import convert as convert_model
    from ..convert.onnx_export import export_onnx

    if Path(out).suffix.lower() != ".onnx":
        raise click.BadParameter("a converted PyTorch model is written as ONNX: use an "
                                 ".onnx output path", param_hint="-o")
    if Path(source).is_file():
        model, x, note = _checkpoint_model(Path(source), shape)
    else:
        model, note = _bundled_model(source, random_weights)
        shape = shape or (1, model.channels, *DEFAULT_SPATIAL)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    converted, report = convert_model(model, x, algorithm=algorithm, verify=verify)
    if note:
        report.notes.append(note)
    proto = export_onnx(converted.eval(), x)
    if verify:
        _check_export(model, proto, x, report)
    return proto, report


def _write_onnx(model, out: Path) -> None:
    from ..sr.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(out, model.SerializeToString())
    except OSError as err:
        raise click.ClickException(f"cannot write {out}: {err}") from None


@click.command()
@click.argument("source", metavar="IN")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the converted model (.onnx).")
@click.option("--algorithm", type=click.Choice(("auto", *ALGORITHMS)), default="auto",
              show_default=True,
              help="Deconvolution algorithm of the converted PyTorch layers (ONNX inputs "
                   "become ConvTranspose nodes and ignore it).")
@click.option("--input-shape", "input_shape", metavar="NxCxHxW", default=None,
              help="Input shape for verification, e.g. 1x1x321x481 (default: the model's "
                   "static shape, dynamic dims 1 / 32 for ONNX; 1xCx64x64 for bundled models "
                   "and checkpoints, raised to what the architecture needs).")
@click.option("--no-verify", is_flag=True, help="Skip running both models and comparing.")
@click.option("--random-weights", is_flag=True,
              help="For a bundled model name: convert the architecture with random weights.")
def convert(source: str, out: str, algorithm: str, input_shape: str | None, no_verify: bool,
            random_weights: bool) -> None:
    """Convert IN (an .onnx file, a checkpoint .pth / .pt / .ckpt / .safetensors, or a
    bundled model name) and write the result to -o OUT (.onnx).

    Checkpoints are read without running code from the file, their architecture detected by
    spandrel, converted in PyTorch, exported to ONNX and the export checked in ONNX Runtime.
    Prints what was converted and what was left alone, and why. Exits non-zero when the
    converted model does not compute the same function or nothing was convertible.
    """
    from ..convert import VerificationError
    from ..convert import convert_onnx as convert_onnx_model

    shape = parse_shape(input_shape)
    out_path = Path(out)
    src_path = Path(source)
    names = _bundled_names()
    kinds = ", ".join((".onnx", *CHECKPOINTS))
    if src_path.is_file():
        if out_path.exists() and out_path.resolve() == src_path.resolve():
            raise click.BadParameter("the output would overwrite the input; choose another path",
                                     param_hint="-o")
        if src_path.suffix.lower() not in (".onnx", *CHECKPOINTS):
            raise click.BadParameter(f"{source}: only {kinds} files (or the bundled names "
                                     f"{', '.join(names)}) can be converted", param_hint="IN")
    elif source not in names:
        raise click.BadParameter(f"{source!r} is neither an existing file ({kinds}) nor a "
                                 f"bundled model ({', '.join(names)})", param_hint="IN")
    try:
        if src_path.is_file() and src_path.suffix.lower() == ".onnx":
            model, report = convert_onnx_model(src_path, verify=not no_verify, input_shape=shape)
            if algorithm != "auto":
                report.notes.append(f"--algorithm {algorithm} ignored: ONNX sites become "
                                    "ConvTranspose nodes, run by the ONNX runtime")
        else:
            model, report = _convert_torch(source, out, algorithm, shape, not no_verify,
                                           random_weights)
    except VerificationError as err:
        raise click.ClickException(f"verification failed, nothing written: {err}") from None
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(str(report))
    if not report.converted:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped)
        raise click.ClickException(
            "nothing was convertible, nothing written: "
            + (reasons or "no sub-pixel (Conv → DepthToSpace) or nearest resize (Resize → "
               "Conv) pattern found"))
    _write_onnx(model, out_path)
    click.echo(f"wrote {out_path}")
