import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "upconv",
    deadline=None,
    max_examples=int(os.environ.get("UPCONV_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("upconv")
