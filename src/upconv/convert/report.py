"""What a conversion changed: converted sites, candidates left alone, and the check it passed."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..shapes import IntPair


@dataclass(frozen=True)
class ConvertedSite:
    """One upsampling layer replaced by a deconvolution.

    ``path`` is where the deconvolution now lives (module path, or ONNX node name);
    ``pattern`` names the nodes it replaced. ``kernel_size`` is the trained conv's,
    ``deconv_kernel_size`` the deconvolution's. ``bias`` is ``"none"``, ``"per-channel"`` or
    ``"periodic"``.
    """

    path: str
    kind: str  # "sub-pixel" or "resize"
    scale: IntPair
    kernel_size: IntPair
    deconv_kernel_size: IntPair
    algorithm: str
    bias: str
    pattern: str = ""


@dataclass(frozen=True)
class SkippedSite:
    """A candidate left as it was, and why.

    ``limitation`` is True when the candidate is a sub-pixel / nearest-resize convolution in
    principle that upconv could not rewrite (a miss), False when it is no such pattern
    (bilinear resize, no convolution, already a deconvolution, ...).
    """

    path: str
    kind: str
    reason: str
    limitation: bool = False


@dataclass
class ConversionReport:
    """The outcome of :func:`upconv.convert` or :func:`upconv.convert_onnx`.

    ``method`` says which rewrite ran (``"real-tensor trace"`` for PyTorch models, ``"onnx
    graph"``). Errors are the max absolute difference and that difference relative to the
    largest reference magnitude, measured on an input of ``input_shape``; ``None`` when not
    verified.
    """

    method: str
    converted: list[ConvertedSite] = field(default_factory=list)
    skipped: list[SkippedSite] = field(default_factory=list)
    verified: bool = False
    input_shape: tuple[int, ...] | None = None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    notes: list[str] = field(default_factory=list)

    def add_converted(self, site: ConvertedSite) -> None:
        self.converted.append(site)

    def skip(self, path: str, kind: str, reason: str, limitation: bool = False) -> None:
        self.skipped.append(SkippedSite(path, kind, reason, limitation))

    def __str__(self) -> str:
        lines = [f"upconv conversion via {self.method}: {len(self.converted)} converted, "
                 f"{len(self.skipped)} left alone"]
        for s in self.converted:
            lines.append(
                f"  converted  {s.kind} x{_fmt_pair(s.scale)} at {s.path}: conv "
                f"{_fmt_pair(s.kernel_size)} -> deconv {_fmt_pair(s.deconv_kernel_size)}, "
                f"bias {s.bias}, algorithm {s.algorithm}"
                + (f"  [{s.pattern}]" if s.pattern else "")
            )
        for s in self.skipped:
            lines.append(f"  left alone {s.kind} at {s.path}: {s.reason}")
        if self.verified:
            shape = "x".join(map(str, self.input_shape)) if self.input_shape else "?"
            lines.append(f"  verified on input {shape}: max abs error {self.max_abs_error:.3g}, "
                         f"max rel error {self.max_rel_error:.3g}")
        else:
            lines.append("  not verified")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _fmt_pair(p: IntPair) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"
