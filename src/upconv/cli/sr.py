"""``upconv upscale``, ``upconv evaluate`` and ``upconv train``: the super-resolution commands."""

from __future__ import annotations

import click

from ..algorithms import ALGORITHMS

#: ``--algorithm`` choices: ``conv`` runs the model as trained; the rest convert its upsampler.
ALGORITHM_CHOICES = ("revd2", "auto", *(a for a in ALGORITHMS if a != "revd2"), "conv")


def _edge_model(net, algorithm: str):
    """``net`` as trained (``conv``) or with its upsampler converted to a deconvolution."""
    return net if algorithm == "conv" else net.to_deconv(algorithm)


def _load(model: str | None, scale: int):
    """upconv's own ESPCN (bundled name, or a file saved by upconv), else any checkpoint
    spandrel recognises (:func:`upconv.load_model`: an ``upconv.LoadedModel``)."""
    from pathlib import Path

    from ..sr.pretrained import load_for_scale

    try:
        return load_for_scale(model, scale)
    except ValueError as err:
        own_error = err
    if model is None or not Path(model).is_file():
        raise click.BadParameter(str(own_error), param_hint="--model")
    from ..load import EXTENSIONS, load_model

    if Path(model).suffix.lower() not in EXTENSIONS:
        raise click.BadParameter(str(own_error), param_hint="--model")
    try:
        loaded = load_model(model)
    except (ImportError, ValueError) as err:
        raise click.BadParameter(f"{own_error}; as a checkpoint of another architecture: "
                                 f"{err}", param_hint="--model") from None
    if loaded.scale != scale:
        raise click.BadParameter(f"{model} is a ×{loaded.scale} {loaded.architecture} model "
                                 f"but --scale is {scale}; pass --scale {loaded.scale}",
                                 param_hint="--model")
    return loaded


def _threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


model_option = click.option(
    "--model", "model", default=None, metavar="NAME|PATH",
    help="Bundled model (espcn-x2, espcn-x3, espcn-x4, espcn-resize-x3) or a .safetensors / "
         ".pt file. Default: the bundled sub-pixel model for --scale.")
scale_option = click.option("--scale", type=click.IntRange(min=2), default=3, show_default=True,
                            help="Upscaling factor; must match the model's.")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="CPU threads for PyTorch (default: PyTorch's choice).")


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IN...",
                type=click.Path(path_type=str))
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output folder (created if missing). Default: next to each input.")
@scale_option
@model_option
@click.option("--algorithm", type=click.Choice(ALGORITHM_CHOICES), default="revd2",
              show_default=True,
              help="conv: the model as trained; others: its upsampler as a deconvolution.")
@click.option("--tile", type=click.IntRange(min=16), default=256, show_default=True,
              help="Process tiles of N×N low-res pixels (with a halo); output is identical.")
@click.option("--fast", is_flag=True,
              help="Let oneDNN pick convolution kernels per tile size: faster on CPU, but tiled "
                   "outputs may differ from untiled by ~1 float32 ulp.")
@click.option("--overwrite", is_flag=True,
              help="Replace earlier outputs (never an input) instead of picking a new name.")
@threads_option
def upscale(inputs, outdir, scale, model, algorithm, tile, fast, overwrite, threads) -> None:
    """Upscale images (RGB, grey, RGBA; any size): Y through the network, chroma and alpha by
    bicubic. Writes NAME-xSCALE.png; unreadable files are reported and skipped."""
    from ..sr.upscale import upscale_files

    _threads(threads)
    net = _edge_model(_load(model, scale), algorithm)
    try:
        failures, total = upscale_files(inputs, net, outdir=outdir, tile=tile, exact=not fast,
                                        overwrite=overwrite, echo=click.echo)
    except OSError as err:
        raise click.ClickException(str(err)) from None
    if failures:
        raise click.ClickException(f"{failures} of {total} input(s) failed (see above)")


@click.command()
@click.argument("folder", type=click.Path(path_type=str), metavar="DIR|bundled")
@scale_option
@model_option
@click.option("--algorithm", type=click.Choice(ALGORITHM_CHOICES[:-1]), default="revd2",
              show_default=True, help="Deconvolution algorithm of the converted path.")
@click.option("--per-image", is_flag=True, help="Also print every image's scores.")
@threads_option
def evaluate(folder, scale, model, algorithm, per_image, threads) -> None:
    """PSNR / SSIM on Y (border of SCALE pixels cropped) of bicubic, the model and the converted
    path against ground truth, for a folder of images, the BSD300 layout (images/test), or
    'bundled' (the held-out scikit-image photographs and the BSD300 koala)."""
    from rich.console import Console
    from rich.table import Table

    from ..sr.datasets import bundled_images, find_images, koala_path, make_pair
    from ..sr.evaluate import METHODS, evaluate_pair, mean_scores
    from ..sr.images import ImageError, open_image

    _threads(threads)
    net = _load(model, scale)
    edge = net.to_deconv(algorithm)
    if folder == "bundled":
        files = [*bundled_images("test"), ("bsd300-koala", open_image(koala_path()))]
    else:
        try:
            files = find_images(folder)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="DIR") from None
    rows, failed = [], 0
    for item in files:
        try:
            name, img = item if isinstance(item, tuple) else (item.name, open_image(item))
            rows.append(evaluate_pair(make_pair(name, img, scale), net, edge))
        except (ImageError, ValueError) as err:
            failed += 1
            click.echo(f"skipped: {err}", err=True)
    if not rows:
        raise click.ClickException(f"no image in {folder} could be evaluated")
    table = Table(title=f"{len(rows)} images, ×{scale}, Y channel, border {scale} cropped")
    table.add_column("image")
    for method in METHODS:
        label = f"{method} ({algorithm})" if method == "converted" else method
        table.add_column(f"{label}\nPSNR dB / SSIM", justify="right")
    table.add_column("max |model − converted|", justify="right")
    shown = [*rows, mean_scores(rows)] if per_image else [mean_scores(rows)]
    for s in shown:
        table.add_row(s.name, *(f"{s.psnr[m]:.3f} / {s.ssim[m]:.4f}" for m in METHODS),
                      f"{s.max_diff:.2e}")
    Console(width=max(120, Console().width)).print(table)
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} image(s) could not be evaluated")


@click.command()
@click.option("--data", default="bundled", show_default=True, metavar="DIR|bundled",
              help="A folder of images (or the BSD300 layout), or 'bundled' (scikit-image's "
                   "photographs).")
@click.option("--scale", type=click.IntRange(min=2), default=3, show_default=True)
@click.option("--upsampler", type=click.Choice(["subpixel", "resize"]), default="subpixel",
              show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="Optimizer steps per epoch.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Global batch (split over data-parallel processes).")
@click.option("--patch", type=click.IntRange(min=1), default=24, show_default=True,
              help="Low-res crop side in pixels.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Checkpoint file (.pt), rewritten atomically every epoch.")
@click.option("--export", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Final safetensors file. Default: --out with suffix .safetensors.")
@click.option("--resume", is_flag=True, help="Continue the checkpoint at --out exactly.")
@click.option("--no-progress", is_flag=True, help="No progress bar (epoch lines only).")
@threads_option
def train(data, scale, upsampler, epochs, steps, batch_size, patch, lr, seed, out, export,
          resume, no_progress, threads) -> None:
    """Train an ESPCN with random crops and flips; a validation PSNR and a checkpoint each
    epoch; export to safetensors. Under torchrun it trains data-parallel (DDP)."""
    from ..sr.train import TrainConfig
    from ..sr.train import train as run_training

    _threads(threads)
    config = TrainConfig(data=data, scale=scale, upsampler=upsampler, epochs=epochs,
                         batch_size=batch_size, lr=lr, patch=patch, steps=steps, seed=seed)
    try:
        run_training(config, out, resume=resume, export=export, log=click.echo,
                     progress=not no_progress)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
