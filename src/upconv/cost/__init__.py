"""The time and energy cost model: exact counts, hardware profiles, estimates and reports.

``count`` counts one upsampling layer; ``load_profile`` reads a hardware profile;
``estimate`` turns counts into time and energy.
"""

from .counts import DTYPES, OPS, Counts, Traffic, combine, count, count_conv, count_deconv

__all__ = ["DTYPES", "OPS", "Counts", "Traffic", "combine", "count", "count_conv",
           "count_deconv"]
