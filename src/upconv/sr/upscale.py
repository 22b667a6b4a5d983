"""Upscale image and video files: the network on luma or RGB (tiled), the rest bicubic.

Images keep their depth (8/16-bit, float32), metadata and format (PNG and TIFF stay so,
others become PNG unless ``format`` says otherwise); videos keep their container, timing and
audio (:mod:`upconv.sr.video`). Outputs ``<stem>-x<r>.<ext>`` are written atomically; an
output never replaces an input, and never replaces an existing file unless asked (a new name
is picked instead).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .channels import colour_plan
from .imageio import FORMATS, Picture, default_format, read_picture, write_picture
from .images import IMAGE_SUFFIXES, ImageError
from .pixels import (
    grey_of_rgb,
    quantize,
    resize_plane,
    rgb_to_ycbcr,
    row_blocks,
    to_float,
    ycbcr_to_rgb_inplace,
)
from .tiling import upscale_tiled

if TYPE_CHECKING:
    from .video import VideoOptions

#: Suffixes treated as videos (decoded with PyAV).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


def run_network(model: nn.Module, x: np.ndarray, tile: int | None = None,
                exact: bool = True) -> np.ndarray:
    """``model`` on float32 ``x (N, C, H, W)`` → ``(N, C', r·H, r·W)`` float32, tiled, on the
    model's device and in its dtype."""
    param = next(model.parameters())
    inp = torch.from_numpy(np.ascontiguousarray(x)).to(param.device, param.dtype)
    out = upscale_tiled(model, inp, tile, exact=exact)
    return out.float().cpu().numpy()


def _resize_frames(planes: np.ndarray, scale: int, out: np.ndarray) -> None:
    """Bicubic ``(N, H, W, C)`` → ``out (N, r·H, r·W, C)``, one plane at a time."""
    n, h, w, c = planes.shape
    size = (w * scale, h * scale)
    for i in range(n):
        for k in range(c):
            out[i, ..., k] = resize_plane(planes[i, ..., k], size)


def upscale_float(x: np.ndarray, model: nn.Module, tile: int | None = None,
                  exact: bool = True, clip: bool = True) -> np.ndarray:
    """Float32 ``x (N, H, W, C)`` (``C`` = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) upscaled to
    ``(N, r·H, r·W, C)``.

    A luma network (1 input channel, see :func:`~upconv.sr.channels.colour_plan`) sees Y of
    full-range YCbCr, with Cb and Cr bicubic; an RGB network sees RGB (grey repeated to RGB,
    its output's luma kept). Alpha is always bicubic. ``clip`` clamps the result (and the
    network's Y) to ``[0, 1]``, as integer outputs need. The result is assembled in one
    output array (colour converted a block of rows at a time): peak memory is about the
    output plus the network's output plane.
    """
    if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"x must be (N, H, W, C) with C in 1..4, got {x.shape}")
    plan, scale = colour_plan(model), int(model.scale)
    n, h, w, channels = x.shape
    colour = 3 if channels >= 3 else 1
    out = np.empty((n, h * scale, w * scale, channels), dtype=np.float32)
    if plan == "luma":
        ycc = rgb_to_ycbcr(x[..., :3]) if colour == 3 else x[..., :1]
        y = run_network(model, ycc[:, None, ..., 0], tile, exact)[:, 0]
        out[..., 0] = np.clip(y, 0.0, 1.0, out=y) if clip else y
        del y
        if colour == 3:
            _resize_frames(ycc[..., 1:], scale, out[..., 1:3])
            ycbcr_to_rgb_inplace(out[..., :3])
    else:
        rgb = x[..., :3] if colour == 3 else np.repeat(x[..., :1], 3, -1)
        up = run_network(model, rgb.transpose(0, 3, 1, 2), tile, exact).transpose(0, 2, 3, 1)
        out[..., :colour] = up if colour == 3 else grey_of_rgb(up)[..., None]
        del up
    if channels in (2, 4):
        _resize_frames(x[..., -1:], scale, out[..., -1:])
    if clip:
        flat = out.reshape(-1, out.shape[-2] * channels)
        for rows in row_blocks(flat.shape[0], flat.shape[1]):
            np.clip(flat[rows], 0.0, 1.0, out=flat[rows])
    return out


def upscale_picture(pic: Picture, model: nn.Module, tile: int | None = None,
                    exact: bool = True) -> Picture:
    """``pic`` upscaled ×r at its own depth (float32 samples are not clipped), same metadata;
    every frame, one at a time."""
    integer = pic.pixels.dtype != np.float32
    frames = [quantize(upscale_float(to_float(a)[None], model, tile, exact, clip=integer)[0],
                       a.dtype) for a in pic.all_frames()]
    return Picture(frames[0], pic.meta, pic.source_format, frames[1:], pic.durations, pic.loop)


def output_path(src: Path, scale: int, outdir: Path | None, taken: set[Path],
                overwrite: bool, suffix: str = ".png") -> tuple[Path, str | None]:
    """Where ``src``'s result goes, and a note when the plain name could not be used.

    ``taken``: resolved paths that must never be written (the inputs).
    """
    folder = outdir if outdir is not None else src.parent
    plain = folder / f"{src.stem}-x{scale}{suffix}"
    candidate, n = plain, 0
    while candidate.resolve() in taken or (candidate.exists() and not overwrite):
        n += 1
        candidate = folder / f"{src.stem}-x{scale}-{n}{suffix}"
    if candidate == plain:
        return plain, None
    why = "is an input" if plain.resolve() in taken else "exists"
    return candidate, f"{plain} {why}; writing {candidate.name} instead"


def image_suffix(src: Path, format: str) -> str:
    """The output suffix for ``format``: the input's own for TIFF (``.tif`` / ``.tiff``)."""
    if format == "tiff" and src.suffix.lower() in (".tif", ".tiff"):
        return src.suffix
    return FORMATS[format][0]


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def media_in(folder: Path) -> list[Path]:
    """The image and video files directly in ``folder``, sorted; a ValueError if none."""
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    found = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))
    if not found:
        raise ValueError(f"{folder}: no image files (nor videos) in this folder; looked for "
                         f"{', '.join((*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))}")
    return found


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """``(files, problems)``: inputs with folders replaced by their image and video files
    (duplicates dropped), and a message for each folder without any."""
    out: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        p = Path(item)
        try:
            files = media_in(p) if p.is_dir() else [p]
        except ValueError as err:
            problems.append(str(err))
            continue
        out.extend(f for f in files if f not in out)
    return out, problems


def upscale_files(
    inputs: Sequence[str | os.PathLike[str]],
    model: nn.Module,
    *,
    outdir: str | os.PathLike[str] | None = None,
    tile: int | None = 256,
    exact: bool = True,
    overwrite: bool = False,
    format: str | None = None,
    video: VideoOptions | None = None,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[int, int]:
    """Upscale every input image and video (folders: their files); returns
    ``(failed, total)``.

    ``format``: output format for images (``png``, ``tiff``, ``jpeg``; default: the input's
    when lossless, else PNG). ``video``: codec, quality and batch for videos. A file that
    cannot be read, upscaled or written is reported through ``echo`` and skipped; the others
    are still processed. An output folder that cannot be created raises OSError.
    """
    from .progress import progress_bar
    from .video import VideoError, VideoOptions, upscale_video

    scale = int(model.scale)
    video = video or VideoOptions()
    out_folder = Path(outdir) if outdir is not None else None
    if out_folder is not None:
        try:
            out_folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"cannot create output folder {out_folder}: {err.strerror}") from None
    files, problems = expand_inputs(inputs)
    for problem in problems:
        echo(f"skipped: {problem}")
    taken = {f.resolve() for f in files}
    failures = len(problems)
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("files", total=len(files), unit="files")
        for src in files:
            try:
                if is_video(src):
                    dst, note = output_path(src, scale, out_folder, taken, overwrite,
                                            src.suffix)
                    if note:
                        echo(note)
                    summary = upscale_video(src, dst, model, tile=tile, exact=exact,
                                            options=video, bar=bar)
                    line = f"{src} ({summary.describe_input()}) -> {dst} ({summary.describe()})"
                else:
                    pic = read_picture(src)
                    fmt = default_format(pic.source_format, format)
                    dst, note = output_path(src, scale, out_folder, taken, overwrite,
                                            image_suffix(src, fmt))
                    if note:
                        echo(note)
                    big = upscale_picture(pic, model, tile, exact)
                    notes = write_picture(big, dst, fmt)
                    for text in notes:
                        echo(f"note: {dst.name}: {text}")
                    (w, h), (bw, bh) = pic.size, big.size
                    frames = f", {big.frame_count} frames" if big.frames else ""
                    line = f"{src} ({w}×{h} {pic.describe()}) -> {dst} ({bw}×{bh}{frames})"
            except (ImageError, VideoError, OSError, ValueError) as err:
                failures += 1
                echo(f"skipped: {err}" if str(src) in str(err) else f"skipped: {src}: {err}")
                continue
            finally:
                bar.advance(task)
            taken.add(dst.resolve())
            echo(line)
    return failures, len(files) + len(problems)
