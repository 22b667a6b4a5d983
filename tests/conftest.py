import os
import tempfile

from hypothesis import HealthCheck, settings

settings.register_profile(
    "upconv",
    deadline=None,
    max_examples=int(os.environ.get("UPCONV_HYPOTHESIS_EXAMPLES", "40")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("upconv")

# algorithm="auto" caches its timings on disk: keep test runs out of the user's cache directory
os.environ["UPCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="upconv-test-cache-")
