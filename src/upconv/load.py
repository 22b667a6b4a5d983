"""Checkpoints from disk: ``upconv.load_model(path)`` → the model, its architecture and scale.

Weights are read without running code from the file: ``.safetensors`` with safetensors,
``.pth`` / ``.pt`` / ``.ckpt`` with ``torch.load(weights_only=True)`` (PyTorch's restricted
unpickler: tensors and plain containers, nothing that could run code — a pickle whose
``__reduce__`` calls a function is refused). The architecture and its hyperparameters are
detected from the state dict by spandrel (the model zoo behind chaiNNer and ComfyUI:
ESRGAN, SwinIR, HAT, Compact, ...), which builds the model and loads the weights.

spandrel is optional (``pip install --no-deps spandrel`` plus ``upconv[zoo]``); it imports
torchvision at import time.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

#: file extensions :func:`load_model` reads
EXTENSIONS = (".pth", ".pt", ".ckpt", ".safetensors")


@dataclass(frozen=True)
class LoadedModel:
    """A model read from a checkpoint: ``model`` (eval mode, CPU, float32) maps
    ``(N, input_channels, H, W)`` to ``(N, output_channels, scale·H, scale·W)``.

    ``architecture`` is spandrel's name for it (``"ESRGAN"``, ``"SwinIR"``, ...); ``purpose``
    ``"SR"``, ``"FaceSR"`` or ``"Restoration"``; inputs need H and W at least
    ``size_minimum`` and a multiple of ``size_multiple`` (spandrel's size requirements).
    """

    model: nn.Module
    architecture: str
    scale: int
    input_channels: int
    output_channels: int
    purpose: str
    path: Path
    size_minimum: int = 0
    size_multiple: int = 1
    tags: tuple[str, ...] = field(default_factory=tuple)

    def network(self) -> CheckpointNetwork:
        """The model as upconv's upscale pipeline runs networks (see :class:`CheckpointNetwork`)."""
        return CheckpointNetwork(self.model, self.scale, self.input_channels,
                                 self.architecture, self.example_input())

    def example_input(self, height: int = 64, width: int = 64, seed: int = 0) -> torch.Tensor:
        """A random ``(1, input_channels, H, W)`` input in [0, 1) the model accepts (sizes
        raised to its minimum and multiple)."""
        def fit(n: int) -> int:
            n = max(n, self.size_minimum)
            return -(-n // self.size_multiple) * self.size_multiple

        g = torch.Generator().manual_seed(seed)
        return torch.rand(1, self.input_channels, fit(height), fit(width), generator=g)


class CheckpointNetwork(nn.Module):
    """A checkpoint's model with what ``upconv upscale`` / ``evaluate`` read from a network:
    ``scale``, ``input_channels``, ``receptive_radius``, ``to_deconv(algorithm)``.

    ``forward`` returns the model's (first) output tensor. The receptive radius of an arbitrary
    architecture is unknown (a transformer's shifted windows reach further with every block),
    so it is ``None``: :func:`upconv.sr.tiling.upscale_tiled` then runs the image in one piece
    (tiles would change the output). ``to_deconv`` runs :func:`upconv.convert` (verified) on
    ``example`` and keeps the report in ``.report``.
    """

    def __init__(self, model: nn.Module, scale: int, input_channels: int, architecture: str,
                 example: torch.Tensor, report: object = None) -> None:
        super().__init__()
        self.model = model
        self.scale = int(scale)
        self.input_channels = int(input_channels)
        self.architecture = architecture
        self.receptive_radius: int | None = None
        self.report = report
        self._example = example

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out if isinstance(out, torch.Tensor) else out[0]

    def to_deconv(self, algorithm: str = "revd2") -> CheckpointNetwork:
        from .convert import convert

        converted, report = convert(self.model, self._example, algorithm=algorithm)
        return CheckpointNetwork(converted, self.scale, self.input_channels, self.architecture,
                                 self._example, report)


def import_spandrel():
    """``spandrel``, or an ImportError that says how to install it."""
    try:
        import spandrel
    except ModuleNotFoundError as err:
        if err.name == "spandrel":
            raise ImportError(
                "reading checkpoints needs spandrel (architecture detection): install it with "
                "`pip install --no-deps spandrel==0.4.2` and its light dependencies with "
                "`pip install 'upconv[zoo]'` (--no-deps keeps pip from resolving torch)"
            ) from None
        if err.name and err.name.split(".")[0] == "torchvision":
            raise ImportError(
                "spandrel imports torchvision, which is not installed. Install the torchvision "
                "build that matches your torch (same version line and index, e.g. `pip install "
                "torchvision --index-url https://download.pytorch.org/whl/cpu` for a CPU "
                f"torch {torch.__version__.split('+')[0]}); a plain `pip install torchvision` "
                "may pull a different torch"
            ) from None
        raise
    return spandrel


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, read without executing anything from the file."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist()):
                raise ValueError(f"{path} is a TorchScript program, not a checkpoint: upconv "
                                 "reads weights only (load it with torch.jit.load yourself)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the restricted unpickler raises UnpicklingError and others
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({first}); upconv "
                         "never unpickles code, so files that need it are refused") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Read a super-resolution / restoration checkpoint and build its model (eval mode).

    ``path``: ``.pth``, ``.pt``, ``.ckpt`` or ``.safetensors``. The state dict may be nested
    the usual ways (``params_ema``, ``state_dict``, ``model.`` prefixes: spandrel's
    canonicalisation). Raises ValueError (unreadable file, unknown architecture, not an
    image-to-image model) or ImportError (spandrel / torchvision missing, with what to do).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    if path.suffix.lower() not in EXTENSIONS:
        raise ValueError(f"{path}: unsupported extension {path.suffix!r}; checkpoints are "
                         f"{', '.join(EXTENSIONS)} (ONNX files go to upconv.convert_onnx)")
    spandrel = import_spandrel()
    state = spandrel.canonicalize_state_dict(_read_state_dict(path))
    try:
        descriptor = spandrel.ModelLoader("cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ValueError(f"{path}: spandrel {spandrel.__version__} does not recognise this "
                         "architecture from its weights") from None
    except (KeyError, RuntimeError, ValueError) as err:
        raise ValueError(f"{path}: the weights do not fit the detected architecture "
                         f"({type(err).__name__}: {err})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ValueError(f"{path}: a {descriptor.architecture.name} model "
                         f"({descriptor.purpose}) is not an image-to-image model")
    req = descriptor.size_requirements
    model = descriptor.model.float().eval()
    return LoadedModel(model, str(descriptor.architecture.id), int(descriptor.scale),
                       int(descriptor.input_channels), int(descriptor.output_channels),
                       str(descriptor.purpose), path, int(req.minimum), int(req.multiple_of),
                       tuple(descriptor.tags))


__all__ = ["EXTENSIONS", "CheckpointNetwork", "LoadedModel", "import_spandrel", "load_model"]
