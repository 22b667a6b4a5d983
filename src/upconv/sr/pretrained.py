"""Bundled ESPCN weights and loading/saving models (safetensors; never pickled code).

A saved model is a safetensors file: the ESPCN ``state_dict`` plus string metadata
``upconv.arch = "espcn"``, ``upconv.scale``, ``upconv.upsampler``, ``upconv.channels`` (and
free-form training notes). Training checkpoints (``.pt``) load too, with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor

from .atomic import atomic_write_bytes
from .models import ESPCN

#: Bundled models: name → (scale, upsampler), in ``upconv/sr/weights/<name>.safetensors``.
PRETRAINED: dict[str, tuple[int, str]] = {
    "espcn-x2": (2, "subpixel"),
    "espcn-x3": (3, "subpixel"),
    "espcn-x4": (4, "subpixel"),
    "espcn-resize-x3": (3, "resize"),
}

ARCH = "espcn"


def default_model_name(scale: int) -> str:
    """The bundled sub-pixel model for ``scale``; a ValueError when none is bundled."""
    name = f"espcn-x{scale}"
    if name not in PRETRAINED:
        scales = sorted({s for s, _ in PRETRAINED.values()})
        raise ValueError(f"no bundled model for scale {scale} (bundled scales: {scales}); "
                         "train one with 'upconv train' and pass --model PATH")
    return name


def pretrained_path(name: str) -> Path:
    """Path of the bundled weights ``name`` (see :data:`PRETRAINED`)."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown model {name!r}; bundled: {', '.join(PRETRAINED)}, "
                         "or give the path of a .safetensors / .pt file")
    return Path(str(resources.files("upconv.sr") / "weights" / f"{name}.safetensors"))


def model_metadata(model: ESPCN, **notes: object) -> dict[str, str]:
    """safetensors metadata describing ``model`` (values must be strings)."""
    meta = {"upconv.arch": ARCH, "upconv.scale": str(model.scale),
            "upconv.upsampler": model.upsampler, "upconv.channels": str(model.channels)}
    if notes:
        meta["upconv.notes"] = json.dumps(notes, sort_keys=True, default=str)
    return meta


def save_model(model: ESPCN, path: str | os.PathLike[str], **notes: object) -> Path:
    """Write ``model``'s weights and architecture to a safetensors file, atomically."""
    if not isinstance(model, ESPCN) or not hasattr(model.upsample, "to_deconv"):
        raise TypeError("save_model expects a trained (not converted) ESPCN")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write_bytes(path, st_save(tensors, metadata=model_metadata(model, **notes)))


def model_from_state(state: dict[str, Tensor], config: dict[str, object],
                     source: str = "state_dict") -> ESPCN:
    """Build the ESPCN ``config`` describes and load ``state``, naming any key mismatch."""
    try:
        model = ESPCN(scale=int(config["scale"]), upsampler=str(config["upsampler"]),
                      channels=int(config.get("channels", 1)))
    except KeyError as err:
        raise ValueError(f"{source}: the architecture metadata lacks {err.args[0]!r}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if wrong:
            parts.append("wrong shapes " + ", ".join(
                f"{k}: {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})"
                for k in wrong))
        raise ValueError(f"{source} is not an ESPCN (scale {model.scale}, {model.upsampler}) "
                         f"checkpoint: {'; '.join(parts)}")
    model.load_state_dict(state)
    return model.eval()


def _load_safetensors(path: Path) -> ESPCN:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    if meta.get("upconv.arch") != ARCH:
        raise ValueError(f"{path}: no upconv ESPCN metadata (upconv.arch = 'espcn'); save "
                         "models with upconv.sr.save_model or 'upconv train'")
    config = {k.removeprefix("upconv."): v for k, v in meta.items()}
    return model_from_state(state, config, str(path))


def _load_checkpoint(path: Path) -> ESPCN:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refuses anything but tensors and plain containers
        raise ValueError(f"{path}: not a readable upconv checkpoint ({err})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not an upconv training checkpoint (needs 'model' and 'config')")
    return model_from_state(ckpt["model"], ckpt["config"], str(path))


def load_pretrained(name_or_path: str | os.PathLike[str]) -> ESPCN:
    """An ESPCN in eval mode from a bundled name (:data:`PRETRAINED`), a ``.safetensors`` file
    or a training checkpoint (``.pt``). Raises ValueError saying what is wrong."""
    if isinstance(name_or_path, str) and name_or_path in PRETRAINED:
        path = pretrained_path(name_or_path)
        if not path.is_file():
            raise ValueError(f"bundled weights {path.name} are missing from this installation")
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise ValueError(f"model {str(name_or_path)!r} is neither a bundled name "
                             f"({', '.join(PRETRAINED)}) nor an existing file")
        if not path.is_file():
            raise ValueError(f"model {str(path)!r} is a folder, not a weights file")
    with path.open("rb") as f:
        head = f.read(8)
    if head[:2] == b"PK":  # torch.save's zip format
        return _load_checkpoint(path)
    return _load_safetensors(path)


def load_for_scale(model: str | os.PathLike[str] | None, scale: int) -> ESPCN:
    """``load_pretrained(model)`` (default: the bundled model for ``scale``), checked to upscale
    by ``scale``; a ValueError when it does not."""
    net = load_pretrained(default_model_name(scale) if model is None else model)
    if net.scale != scale:
        raise ValueError(f"model {str(model)!r} upscales ×{net.scale} but --scale is {scale}; "
                         f"pass --scale {net.scale} or a ×{scale} model")
    return net
