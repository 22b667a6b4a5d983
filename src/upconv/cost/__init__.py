"""The time and energy cost model: exact counts, hardware profiles, estimates and reports.

``count`` counts one upsampling layer; ``load_profile`` reads a hardware profile;
``estimate`` turns counts into time and energy.
"""

from .counts import DTYPES, OPS, Counts, Traffic, combine, count, count_conv, count_deconv
from .estimate import Estimate, estimate, estimate_all
from .profiles import HardwareProfile, ProfileError, available_profiles, load_profile, save_profile

__all__ = ["DTYPES", "OPS", "Counts", "Estimate", "HardwareProfile", "ProfileError", "Traffic",
           "available_profiles", "combine", "count", "count_conv", "count_deconv", "estimate",
           "estimate_all", "load_profile", "save_profile"]
