"""Training and evaluation data: bundled photographs, image folders, SR pairs, random crops.

``bundled`` data is scikit-image's photographs that ship inside its wheel (no download),
split once into train / validation / held-out test. A folder is either the BSD300 layout
(``images/train``, ``images/test``) or a plain folder of images.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .images import IMAGE_SUFFIXES, ImageError, downscale, luma, modcrop, open_image

#: scikit-image photographs bundled in its wheel, by split (no network needed).
BUNDLED_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "camera", "moon", "motorcycle", "hubble_deep_field", "retina",
              "brick", "grass", "gravel", "page", "text", "immunohistochemistry"),
    "val": ("coins",),
    "test": ("chelsea", "coffee", "rocket"),
}

KOALA = "bsd300-koala.jpg"


def koala_path() -> Path:
    """The bundled BSD300 koala (321×481), the image the paper upsamples ×3."""
    return Path(str(resources.files("upconv.sr") / "data" / KOALA))


def bundled_image(name: str) -> Image.Image:
    """One bundled scikit-image photograph as an ``L`` or ``RGB`` image."""
    import skimage.data

    if name == "motorcycle":
        arr = skimage.data.stereo_motorcycle()[0]
    elif name in {n for names in BUNDLED_SPLITS.values() for n in names}:
        arr = getattr(skimage.data, name)()
    else:
        known = ", ".join(n for names in BUNDLED_SPLITS.values() for n in names)
        raise ValueError(f"unknown bundled image {name!r}; known: {known}")
    return Image.fromarray(np.asarray(arr, dtype=np.uint8))


def bundled_images(split: str) -> list[tuple[str, Image.Image]]:
    """``(name, image)`` for every bundled photograph of ``split`` ('train', 'val', 'test')."""
    if split not in BUNDLED_SPLITS:
        raise ValueError(f"split must be one of {sorted(BUNDLED_SPLITS)}, got {split!r}")
    return [(name, bundled_image(name)) for name in BUNDLED_SPLITS[split]]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_images(folder: str | os.PathLike[str], split: str = "test") -> list[Path]:
    """Image files of ``folder``: ``images/<split>/`` in the BSD300 layout, else the folder itself.

    Raises ValueError when the folder does not exist or holds no image files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    bsd = folder / "images" / split
    found = _images_in(bsd) if bsd.is_dir() else _images_in(folder)
    if not found:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        raise ValueError(f"{folder}: no image files ({suffixes}) here or in images/{split}/")
    return found


def folder_splits(folder: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """``(train, validation)`` files of a folder.

    BSD300 layout: ``images/train`` and ``images/test``. A plain folder: every tenth image
    (sorted by name, at least one) is held out for validation.
    """
    folder = Path(folder)
    if (folder / "images" / "train").is_dir():
        return find_images(folder, "train"), find_images(folder, "test")
    files = find_images(folder)
    if len(files) < 2:
        raise ValueError(f"{folder}: need at least 2 images (one is held out for validation)")
    val = files[::10]
    return [f for f in files if f not in val], val


@dataclass(frozen=True)
class SRPair:
    """A low-res / high-res Y pair: ``lr (1, h, w)``, ``hr (1, r·h, r·w)``, float32 in [0, 1]."""

    name: str
    lr: Tensor
    hr: Tensor


def make_pair(name: str, img: Image.Image, scale: int) -> SRPair:
    """Modcrop ``img``, downscale it bicubically by ``scale``, keep both Y channels."""
    hr = modcrop(img, scale)
    lr = downscale(hr, scale)
    return SRPair(name, torch.from_numpy(luma(lr))[None], torch.from_numpy(luma(hr))[None])


def load_pairs(source: str | Iterable[str | os.PathLike[str] | tuple[str, Image.Image]],
               scale: int) -> list[SRPair]:
    """SR pairs from image files or ``(name, image)`` tuples; unreadable files raise ImageError."""
    pairs = []
    for item in source:
        if isinstance(item, tuple):
            name, img = item
        else:
            name, img = Path(item).name, open_image(item)
        pairs.append(make_pair(name, img, scale))
    return pairs


def training_data(data: str, scale: int) -> tuple[list[SRPair], list[SRPair]]:
    """``(train, validation)`` SR pairs of ``data``: ``"bundled"`` or a folder."""
    if data == "bundled":
        return (load_pairs(bundled_images("train"), scale),
                load_pairs(bundled_images("val"), scale))
    train, val = folder_splits(data)
    return load_pairs(train, scale), load_pairs(val, scale)


# --- random crops --------------------------------------------------------------------------

#: Columns of a crop plan: image index, top, left (low-res pixels), dihedral flip code 0..7.
PLAN_COLUMNS = ("image", "top", "left", "flip")


def crop_plan(pairs: Sequence[SRPair], patch: int, count: int, seed: int, epoch: int) -> Tensor:
    """``count`` random crops for ``epoch``: int64 ``(count, 4)`` rows of :data:`PLAN_COLUMNS`.

    A pure function of ``(seed, epoch)``: every process of a data-parallel run, and a resumed
    run, draws the same plan. Images smaller than ``patch`` (low-res) are never picked.
    """
    usable = [i for i, p in enumerate(pairs) if min(p.lr.shape[-2:]) >= patch]
    if not usable:
        raise ValueError(f"no training image is at least {patch} low-res pixels on each side; "
                         "use a smaller --patch or larger images")
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    pick = torch.tensor(usable)[torch.randint(len(usable), (count,), generator=gen)]
    room = torch.tensor([[pairs[i].lr.shape[-2] - patch + 1, pairs[i].lr.shape[-1] - patch + 1]
                         for i in pick.tolist()]).reshape(count, 2)
    corner = (torch.rand(count, 2, generator=gen, dtype=torch.float64) * room).long()
    flip = torch.randint(8, (count, 1), generator=gen)
    return torch.cat([pick[:, None], corner, flip], dim=1)


def _dihedral(t: Tensor, code: int) -> Tensor:
    """One of the 8 flips/transposes of a ``(..., h, w)`` square patch."""
    if code & 1:
        t = t.flip(-1)
    if code & 2:
        t = t.flip(-2)
    if code & 4:
        t = t.transpose(-1, -2)
    return t


def gather_crops(pairs: Sequence[SRPair], plan: Tensor, patch: int,
                 scale: int) -> tuple[Tensor, Tensor]:
    """Cut the crops of ``plan`` rows: ``lr (B, 1, p, p)`` and ``hr (B, 1, r·p, r·p)``."""
    lrs, hrs = [], []
    for i, top, left, code in plan.tolist():
        pair = pairs[i]
        lr = pair.lr[:, top : top + patch, left : left + patch]
        hr = pair.hr[:, scale * top : scale * (top + patch), scale * left : scale * (left + patch)]
        lrs.append(_dihedral(lr, code))
        hrs.append(_dihedral(hr, code))
    return torch.stack(lrs), torch.stack(hrs)


__all__ = [
    "BUNDLED_SPLITS",
    "ImageError",
    "SRPair",
    "bundled_images",
    "crop_plan",
    "find_images",
    "folder_splits",
    "gather_crops",
    "koala_path",
    "load_pairs",
    "make_pair",
    "training_data",
]
