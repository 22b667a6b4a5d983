"""The benchmark suite behind ``upconv bench`` and ``benchmarks/run.py``.

:mod:`~upconv.bench.zoo` (the layers: the paper's L1–L6 and the held-out H1–H6),
:mod:`~upconv.bench.cases` (what is timed), :mod:`~upconv.bench.measure` (timing, roofline,
allocations), :mod:`~upconv.bench.suite` (the run) and :mod:`~upconv.bench.report`
(markdown + JSON).
"""

from .report import markdown, write_results
from .suite import Results, Row, run_suite
from .zoo import HELDOUT, LAYERS, SMALL, ZOOS, Layer, all_layer_ids, layer_by_id

__all__ = ["HELDOUT", "LAYERS", "SMALL", "ZOOS", "Layer", "Results", "Row", "all_layer_ids",
           "layer_by_id", "markdown", "run_suite", "write_results"]
