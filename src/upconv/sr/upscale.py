"""Upscale image files: Y through the network (tiled), chroma and alpha by bicubic.

Outputs are PNG files ``<stem>-x<r>.png`` written atomically; an output never replaces an
input, and never replaces an existing file unless asked (a new name is picked instead).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from .images import ImageError, luma, merge_luma, open_image, save_image
from .tiling import upscale_tiled


def upscale_image(img: Image.Image, model: nn.Module, tile: int | None = None,
                  exact: bool = True) -> Image.Image:
    """``img`` (``L``/``LA``/``RGB``/``RGBA``, ``W × H``) upscaled to ``r·W × r·H``, same mode."""
    y = torch.from_numpy(luma(img))[None, None]
    dtype = next(model.parameters()).dtype
    up = upscale_tiled(model, y.to(dtype), tile, exact=exact)[0, 0]
    return merge_luma(up.float().clamp(0, 1).numpy(), img)


def output_path(src: Path, scale: int, outdir: Path | None, taken: set[Path],
                overwrite: bool) -> tuple[Path, str | None]:
    """Where ``src``'s result goes, and a note when the plain name could not be used.

    ``taken``: resolved paths that must never be written (the inputs).
    """
    folder = outdir if outdir is not None else src.parent
    plain = folder / f"{src.stem}-x{scale}.png"
    candidate, n = plain, 0
    while candidate.resolve() in taken or (candidate.exists() and not overwrite):
        n += 1
        candidate = folder / f"{src.stem}-x{scale}-{n}.png"
    if candidate == plain:
        return plain, None
    why = "is an input" if plain.resolve() in taken else "exists"
    return candidate, f"{plain} {why}; writing {candidate.name} instead"


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
    """``(files, problems)``: inputs with folders replaced by their image files (duplicates
    dropped), and a message for each folder without images."""
    from .datasets import find_images

    out: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        p = Path(item)
        try:
            files = find_images(p) if p.is_dir() else [p]
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
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> tuple[int, int]:
    """Upscale every input image (folders: their images); returns ``(failed, total)``.

    A file that cannot be read, upscaled or written is reported through ``echo`` and skipped;
    the others are still processed. An output folder that cannot be created raises OSError.
    """
    from rich.console import Console
    from rich.progress import Progress

    scale = int(model.scale)
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
    with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
        for src in bar.track(files, description="upscaling"):
            try:
                img = open_image(src)
                dst, note = output_path(src, scale, out_folder, taken, overwrite)
                if note:
                    echo(note)
                save_image(upscale_image(img, model, tile, exact), dst)
            except (ImageError, OSError, ValueError) as err:
                failures += 1
                echo(f"skipped: {err}")
                continue
            taken.add(dst.resolve())
            echo(f"{src} ({img.width}×{img.height} {img.mode}) -> {dst} "
                 f"({scale * img.width}×{scale * img.height})")
    return failures, len(files) + len(problems)
