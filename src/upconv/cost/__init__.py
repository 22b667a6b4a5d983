"""The time and energy cost model: exact counts, hardware profiles, estimates and reports.

``count`` counts one upsampling layer; ``walk_module`` / ``walk_onnx`` count every layer of a
model; ``load_profile`` reads a hardware profile; ``estimate`` turns counts into time and
energy. See docs/cost.md.
"""

from .counts import DTYPES, OPS, Counts, Traffic, combine, count, count_conv, count_deconv
from .estimate import Estimate, estimate, estimate_all
from .profiles import HardwareProfile, ProfileError, available_profiles, load_profile, save_profile
from .walk import ModelCost, walk_module, walk_onnx

__all__ = [
           "DTYPES",
           "OPS",
           "Counts",
           "Estimate",
           "HardwareProfile",
           "ModelCost",
           "ProfileError",
           "Traffic",
           "available_profiles",
           "combine",
           "count",
           "count_conv",
           "count_deconv",
           "estimate",
           "estimate_all",
           "load_profile",
           "save_profile",
           "walk_module",
           "walk_onnx",
]
