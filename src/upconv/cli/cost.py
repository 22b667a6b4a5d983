"""``upconv cost`` and ``upconv calibrate``: the time and energy cost model from the shell."""

from __future__ import annotations

import json
import re

import click

OPS = ("C-SP", "C-NN", "D-SP", "D-NN", "deconv")
DTYPE_CHOICES = ("float32", "float16", "int8")


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if not re.fullmatch(r"\d+(x\d+){3}", text):
        raise click.BadParameter(f"{text!r} is not NxCxHxW, e.g. 1x1x321x481",
                                 param_hint="--input-shape")
    return tuple(int(v) for v in text.split("x"))


def _pair(text: str, name: str, four: bool = False) -> int | tuple[int, ...]:
    pattern = r"\d+(,\d+)?" + (r"|\d+(,\d+){3}" if four else "")
    if not re.fullmatch(pattern, text):
        raise click.BadParameter(f"{text!r} is not an integer or two (e.g. 3 or 3,2)"
                                 + (" or four" if four else ""), param_hint=name)
    values = tuple(int(v) for v in text.split(","))
    return values[0] if len(values) == 1 else values  # type: ignore[return-value]


@click.command()
@click.option("--op", type=click.Choice(OPS), help="Count one upsampling layer of this kind "
              "(C-SP/D-SP: sub-pixel; C-NN/D-NN: resize conv; deconv: a deconvolution given "
              "by --kernel-size, --stride, --padding) under every strategy.")
@click.option("--in-channels", type=click.IntRange(min=1), help="Layer input channels.")
@click.option("--out-channels", type=click.IntRange(min=1), help="Layer output channels C.")
@click.option("--kernel-size", default="3", show_default=True,
              help="Trained conv kernel: K or Kh,Kw.")
@click.option("--scale", default="3", show_default=True, help="Upsampling scale: r or rh,rw.")
@click.option("--stride", help="Deconvolution stride s or sh,sw (--op deconv).")
@click.option("--padding", default="0", show_default=True,
              help="Deconvolution crops: P, Ph,Pw or top,bottom,left,right (--op deconv).")
@click.option("--output-padding", default="0", show_default=True,
              help="Deconvolution output padding (--op deconv).")
@click.option("--height", type=click.IntRange(min=1), help="Input height (layer mode).")
@click.option("--width", type=click.IntRange(min=1), help="Input width (layer mode).")
@click.option("--model", "model_name", help="A bundled model by name: espcn.")
@click.option("--upsampler", type=click.Choice(["subpixel", "resize"]), default="subpixel",
              show_default=True, help="ESPCN's upsampling layer as trained.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False),
              help="Count an ONNX model's layers.")
@click.option("--input-shape", help="Model input NxCxHxW (default for espcn: 1x1x321x481).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size (layer mode).")
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default=None,
              help="Element type [default: the profile's].")
@click.option("--profile", "profile_name", default="horowitz-45nm", show_default=True,
              help="A bundled or calibrated profile name, or a path to a TOML file.")
@click.option("--mode", type=click.Choice(["roofline", "additive"]), default="roofline",
              show_default=True, help="Time: max(compute, memory) or their sum.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a PNG of the report.")
@click.option("--paper", is_flag=True, help="Reproduce the paper's ESPCN x3 (321x481) ratios "
              "under the profile, beside the published ones.")
@click.option("--validate", is_flag=True, help="Also time the benchmark layers here and "
              "compare with the model's predictions (takes a minute; use a calibrated profile).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads for --validate (calibrate with the same).")
def cost(op, in_channels, out_channels, kernel_size, scale, stride, padding, output_padding,
         height, width, model_name, upsampler, onnx_path, input_shape, batch, dtype,
         profile_name, mode, as_json, plot, paper, validate, threads) -> None:
    """Work, traffic, time and energy of a layer or a model, as trained and converted.

    \b
    upconv cost --op D-SP --in-channels 32 --out-channels 1 --kernel-size 3 --scale 3 \\
                --height 321 --width 481
    upconv cost --model espcn --scale 3 --input-shape 1x1x321x481
    upconv cost --onnx model.onnx --profile edge-int8 --json
    """
    from ..cost import load_profile
    from ..cost.report import build_report, layer_model, print_report
    from ..cost.walk import builtin_model, walk_module, walk_onnx

    chosen = [name for name, v in (("--op", op), ("--model", model_name), ("--onnx", onnx_path))
              if v]
    if len(chosen) != 1 and not (validate or paper):
        raise click.UsageError("give exactly one of --op, --model or --onnx"
                               + (f" (got {', '.join(chosen)})" if chosen else ""))
    try:
        profile = load_profile(profile_name)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--profile") from None
    dtype = dtype or profile.default_dtype
    shape = _shape(input_shape)
    try:
        if op:
            missing = [f"--{n.replace('_', '-')}" for n, v in (
                ("in_channels", in_channels), ("out_channels", out_channels),
                ("height", height), ("width", width)) if v is None]
            if op == "deconv" and stride is None:
                missing.append("--stride")
            if missing:
                raise click.UsageError(f"--op {op} needs {', '.join(missing)}")
            geometry = {} if op != "deconv" else dict(
                stride=_pair(stride, "--stride"), padding=_pair(padding, "--padding", True),
                output_padding=_pair(output_padding, "--output-padding"))
            model = layer_model(op, in_channels=in_channels, out_channels=out_channels,
                                kernel_size=_pair(kernel_size, "--kernel-size"),
                                scale=_pair(scale, "--scale"), height=height, width=width,
                                batch=batch, dtype=dtype, **geometry)
        elif model_name:
            r = _pair(scale, "--scale")
            if not isinstance(r, int):
                raise click.BadParameter("ESPCN takes one integer scale", param_hint="--scale")
            net = builtin_model(model_name, r, upsampler)
            model = walk_module(net, shape or (1, 1, 321, 481), dtype=dtype,
                                name=f"{model_name} x{r} ({upsampler})")
        elif onnx_path:
            model = walk_onnx(onnx_path, shape, dtype=dtype)
        else:
            model = None
        report = build_report(model, profile, mode) if model is not None else None
    except (ValueError, TypeError) as err:
        raise click.ClickException(str(err)) from None
    if paper:
        from ..cost.paper import paper_comparison

        rows = paper_comparison(profile)
        report = (report or {}) | {"paper": rows}
    if validate:
        from ..cost.validate import print_validation, validate_model

        results = validate_model(profile, threads=threads, mode=mode)
        if report is not None:
            report["validation"] = results
        else:
            report = {"validation": results}
    if plot and (report is None or "upsampling" not in report):
        raise click.UsageError("--plot needs --op, --model or --onnx")
    if plot:
        from ..cost.plots import plot_report

        try:
            plot_report(report, profile, plot, model)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--plot") from None
    if as_json:
        click.echo(json.dumps(report, indent=2, default=float))
        return
    if report and "upsampling" in report:
        print_report(report)
    if paper:
        from ..cost.paper import print_paper

        print_paper(report["paper"], profile.name)
    if validate:
        print_validation(report["validation"])
    if plot:
        click.echo(f"plot written to {plot}")


@click.command()
@click.option("--name", default="calibrated", show_default=True,
              help="Profile name; saved as NAME.toml in the user profile folder.")
@click.option("--output", type=click.Path(dir_okay=False),
              help="Write here instead of the user profile folder.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads while measuring (cost --validate times with the same).")
@click.option("--quick", is_flag=True, help="Smaller problems, fewer repeats (less accurate).")
@click.option("--base", "base_profile", default="horowitz-45nm", show_default=True,
              help="Profile whose energies the calibrated profile keeps (energy is not measured).")
def calibrate(name, output, threads, quick, base_profile) -> None:
    """Measure this machine (sgemm throughput, copy bandwidth, cache size); write a profile."""
    from ..cost import load_profile
    from ..cost.calibrate import calibrate_profile
    from ..cost.profiles import save_profile, user_profile_dir

    try:
        base = load_profile(base_profile)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--base") from None
    profile, notes = calibrate_profile(name, base, threads=threads, quick=quick)
    path = save_profile(profile, output or user_profile_dir() / f"{name}.toml", notes)
    click.echo(notes)
    click.echo(f"profile {name!r} written to {path}")
    if output is None:
        click.echo(f"use it with: upconv cost --profile {name} ...")
