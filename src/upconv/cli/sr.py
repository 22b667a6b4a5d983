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
    spandrel recognises (:func:`upconv.load_model`, as a
    :class:`~upconv.load.CheckpointNetwork`)."""
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
    return loaded.network()


def _threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


model_option = click.option(
    "--model", "model", default=None, metavar="NAME|PATH",
    help="Bundled model (espcn-x2, espcn-x3, espcn-x4, espcn-resize-x3), an upconv ESPCN file, "
         "or a checkpoint of any architecture spandrel knows (.pth/.pt/.ckpt/.safetensors, "
         "loaded without running pickled code). Default: the bundled sub-pixel model for "
         "--scale.")
scale_option = click.option("--scale", type=click.IntRange(min=2), default=3, show_default=True,
                            help="Upscaling factor; must match the model's.")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="CPU threads for PyTorch (default: PyTorch's choice).")


def _build_model(model: str | None, scale: int, algorithm: str):
    """The network ``upscale`` runs (picklable by reference, so Ray workers can build it)."""
    from ..sr.pretrained import load_for_scale

    return _edge_model(load_for_scale(model, scale), algorithm)


def _is_ray_address(value: str) -> bool:
    """``auto``, ``local``, ``HOST:PORT`` or ``ray://...``: anything else after ``--ray`` is
    an input folder."""
    import re

    return (value in ("auto", "local") or "://" in value
            or re.fullmatch(r"[\w.-]+:\d+", value) is not None)


@click.command()
@click.argument("inputs", nargs=-1, metavar="IN...", type=click.Path(path_type=str))
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
              help="Let oneDNN pick convolution kernels per tile size, and keep freed memory "
                   "for reuse: faster on CPU (about 5x on video), but tiled outputs may differ "
                   "from untiled by ~1 float32 ulp.")
@click.option("--overwrite", is_flag=True,
              help="Replace earlier outputs (never an input) instead of picking a new name.")
@click.option("--format", "format_", type=click.Choice(["auto", "png", "tiff", "jpeg"]),
              default="auto", show_default=True,
              help="Image output format; auto: PNG and TIFF inputs keep theirs, others PNG.")
@click.option("--codec", default=None, metavar="ENCODER",
              help="Video encoder (FFmpeg name). Default: libx264 (libvpx-vp9 for .webm).")
@click.option("--crf", type=click.IntRange(min=0, max=63), default=None,
              help="Video quality: the encoder's constant rate factor (lower is better). "
                   "Default: 18 for libx264.")
@click.option("--preset", default=None,
              help="Video encoder speed preset (x264 / x265: ultrafast ... veryslow).")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True,
              help="Video frames per network call.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None,
              metavar="[ADDRESS]",
              help="Run a folder on Ray Data: a local Ray instance, or the cluster at ADDRESS "
                   "(auto, HOST:PORT, ray://HOST:PORT). Needs -o; resumable; writes "
                   "upconv-manifest.json there.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --ray: model replicas (actors). Default: one per CPU.")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda[:N]",
              help="Where the network runs. On CUDA the converted upsampler runs the REVD2 "
                   "Triton kernel (docs/gpu.md).")
@threads_option
def upscale(inputs, outdir, scale, model, algorithm, tile, fast, overwrite, format_, codec,
            crf, preset, batch, ray_address, workers, device, threads) -> None:
    """Upscale images (grey, RGB, alpha; 8/16-bit, float TIFF) and videos (.mp4 .mkv .mov
    .webm .avi): luma through the network (RGB for RGB networks), chroma and alpha by
    bicubic. Keeps bit depth, ICC profile, dpi and EXIF (orientation applied), and every
    frame of an animation (GIF, PNG, WebP: an animated PNG, timing and loop kept) or page of
    a TIFF; videos keep timing and audio. Writes NAME-xSCALE.png (a TIFF keeps its suffix,
    a video its container; see --format); unreadable files are reported and skipped."""
    from ..sr.allocator import keep_freed_memory
    from ..sr.upscale import upscale_files
    from ..sr.video import VideoOptions

    if ray_address is not None and not _is_ray_address(ray_address):
        inputs, ray_address = (ray_address, *inputs), "local"
    if not inputs:
        raise click.UsageError("give at least one input file or folder")
    if workers is not None and ray_address is None:
        raise click.UsageError("--workers is for --ray runs")
    if ray_address is not None and device != "cpu":
        raise click.UsageError("--ray runs on the workers' CPUs; --device is for local runs")
    _threads(threads)
    if fast:  # oneDNN's buffers are reused as they are; see upconv.sr.allocator
        keep_freed_memory()
    target = _device(device)
    net = _edge_model(_load(model, scale), algorithm).to(target)
    if ray_address is not None:
        _upscale_on_ray(inputs, outdir, ray_address, workers, model=model, scale=scale,
                        algorithm=algorithm, tile=tile, exact=not fast, format_=format_,
                        threads=threads)
        return
    video = VideoOptions(codec=codec, crf=crf, preset=preset, batch=batch)
    try:
        failures, total = upscale_files(inputs, net, outdir=outdir, tile=tile, exact=not fast,
                                        overwrite=overwrite, format=format_, video=video,
                                        echo=click.echo)
    except OSError as err:
        raise click.ClickException(str(err)) from None
    if failures:
        raise click.ClickException(f"{failures} of {total} input(s) failed (see above)")


def _device(name: str):
    """``--device``: a torch.device that exists here, else a clear error."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise click.BadParameter(f"{name!r} is not a device ({err}); use cpu or cuda[:N]",
                                 param_hint="--device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise click.BadParameter("CUDA is not available on this machine (PyTorch "
                                     f"{torch.__version__}); use --device cpu",
                                     param_hint="--device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise click.BadParameter(f"there are {torch.cuda.device_count()} CUDA device(s); "
                                     f"{name} does not exist", param_hint="--device")
    elif device.type != "cpu":
        raise click.BadParameter(f"{name!r}: use cpu or cuda[:N]", param_hint="--device")
    return device


def _upscale_on_ray(inputs, outdir, address, workers, *, model, scale, algorithm, tile, exact,
                    format_, threads) -> None:
    import functools

    from ..sr.batch import upscale_collection

    if len(inputs) != 1:
        raise click.UsageError("--ray takes one input folder")
    if outdir is None:
        raise click.UsageError("--ray needs an output folder: -o OUT_DIR")
    factory = functools.partial(_build_model, model, scale, algorithm)
    try:
        report = upscale_collection(inputs[0], outdir, factory, scale=scale, tile=tile,
                                    exact=exact, format=format_, address=address,
                                    workers=workers, threads=threads or 1, echo=click.echo)
    except (OSError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(report.describe())
    if report.failed:
        raise click.ClickException(f"{report.failed} of {report.total} image(s) failed; "
                                   f"see {report.manifest}")


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
