"""The benchmark suite behind ``upconv bench`` and ``benchmarks/run.py``.

:mod:`~upconv.bench.zoo` (the layers), :mod:`~upconv.bench.cases` (what is timed),
:mod:`~upconv.bench.measure` (timing, roofline, allocations), :mod:`~upconv.bench.suite`
(the run) and :mod:`~upconv.bench.report` (markdown + JSON).
"""

from .report import markdown, write_results
from .suite import Results, Row, run_suite
from .zoo import LAYERS, Layer

__all__ = ["LAYERS", "Layer", "Results", "Row", "markdown", "run_suite", "write_results"]
