"""Does the converted model compute the same function? Max absolute / relative error checks."""

from __future__ import annotations

import numpy as np

# Allowed max |a - b| relative to the largest reference magnitude, by float width in bytes:
# a few hundred ulps, since a deconvolution sums the same products in another order.
RELATIVE_TOLERANCE = {2: 1e-2, 4: 1e-4, 8: 1e-10}


class VerificationError(ValueError):
    """The converted model's output differs from the original's beyond float tolerance.

    ``report`` is the :class:`~upconv.convert.report.ConversionReport` with the errors.
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


def output_errors(reference: np.ndarray, result: np.ndarray) -> tuple[float, float]:
    """``(max |ref - res|, that / max |ref|)``; shapes must match (ValueError otherwise)."""
    if reference.shape != result.shape:
        raise VerificationError(
            f"converted output shape {result.shape} != original output shape {reference.shape}")
    ref = reference.astype(np.float64)
    diff = np.abs(ref - result.astype(np.float64))
    if not np.all(np.isfinite(diff)):
        return float("inf"), float("inf")
    max_abs = float(diff.max(initial=0.0))
    scale = float(np.abs(ref).max(initial=0.0))
    return max_abs, (max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")))


def tolerance(itemsize: int) -> float:
    """Relative tolerance for float outputs of ``itemsize`` bytes (float32: 4)."""
    return RELATIVE_TOLERANCE.get(int(itemsize), 1e-4)
