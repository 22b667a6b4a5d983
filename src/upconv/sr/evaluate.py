"""Super-resolution quality: PSNR / SSIM on the Y channel (scikit-image), the usual protocol.

Ground truth is modcropped, downscaled bicubically by ``r``, upscaled back by each method,
and compared on Y with ``r`` border pixels cropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from .datasets import SRPair
from .images import bicubic_upscale
from .tiling import upscale_tiled

#: Methods scored by :func:`evaluate_pair`, in report order.
METHODS = ("bicubic", "model", "converted")


def shave(y: np.ndarray, border: int) -> np.ndarray:
    """``y (H, W)`` without ``border`` pixels on each side."""
    if border and (y.shape[0] <= 2 * border or y.shape[1] <= 2 * border):
        raise ValueError(f"image of {y.shape[1]}×{y.shape[0]} pixels is too small to crop a "
                         f"{border}-pixel border")
    return y[border : y.shape[0] - border, border : y.shape[1] - border] if border else y


def y_scores(pred: np.ndarray, truth: np.ndarray, border: int) -> tuple[float, float]:
    """``(PSNR dB, SSIM)`` of float Y planes in ``[0, 1]`` after cropping ``border`` pixels."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in size")
    p, t = shave(pred, border).astype(np.float64), shave(truth, border).astype(np.float64)
    if min(p.shape) < 7:
        raise ValueError(f"image too small for SSIM's 7×7 window after cropping: {p.shape}")
    with np.errstate(divide="ignore"):  # identical images: PSNR is +inf, not a warning
        psnr = peak_signal_noise_ratio(t, p, data_range=1.0)
    ssim = structural_similarity(t, p, data_range=1.0)
    return float(psnr), float(ssim)


def model_y(model: nn.Module, pair: SRPair, tile: int | None = None) -> np.ndarray:
    """``model``'s upscaled Y of ``pair.lr``: float32 ``(rH, rW)`` clipped to ``[0, 1]``."""
    y = upscale_tiled(model, pair.lr[None], tile, exact=False)[0, 0]
    return np.clip(y.float().cpu().numpy(), 0.0, 1.0)


@dataclass
class ImageScores:
    """PSNR (dB) and SSIM per method for one image; ``max_diff``: |model − converted| max."""

    name: str
    psnr: dict[str, float] = field(default_factory=dict)
    ssim: dict[str, float] = field(default_factory=dict)
    max_diff: float | None = None


def evaluate_pair(pair: SRPair, model: nn.Module, converted: nn.Module | None = None,
                  scale: int | None = None) -> ImageScores:
    """Score bicubic, ``model`` and (optionally) ``converted`` on one SR pair."""
    r = int(scale if scale is not None else model.scale)
    truth = pair.hr[0].numpy()
    scores = ImageScores(pair.name)
    outputs = {"bicubic": bicubic_upscale(pair.lr[0].numpy(), r), "model": model_y(model, pair)}
    if converted is not None:
        outputs["converted"] = model_y(converted, pair)
        scores.max_diff = float(np.abs(outputs["converted"] - outputs["model"]).max())
    for method, pred in outputs.items():
        scores.psnr[method], scores.ssim[method] = y_scores(pred, truth, r)
    return scores


def mean_scores(rows: Sequence[ImageScores]) -> ImageScores:
    """Mean PSNR / SSIM over ``rows`` (and the largest ``max_diff``)."""
    if not rows:
        raise ValueError("no scored images to average")
    mean = ImageScores("mean")
    for method in rows[0].psnr:
        mean.psnr[method] = float(np.mean([r.psnr[method] for r in rows]))
        mean.ssim[method] = float(np.mean([r.ssim[method] for r in rows]))
    diffs = [r.max_diff for r in rows if r.max_diff is not None]
    mean.max_diff = max(diffs) if diffs else None
    return mean
