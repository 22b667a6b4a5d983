import importlib.util
import os
import sys
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

# spandrel imports torchvision, which cannot be installed beside the CPU torch pin: put the
# test-only stand-in (tests/stubs/README.md) on the path when no real torchvision exists
if importlib.util.find_spec("torchvision") is None:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "stubs"))

# Triton's interpreter must be switched on before Triton is imported, for the whole process:
# its tests (tests/interpreted) run in a child process that tests/test_triton_interpret.py
# starts with TRITON_INTERPRET=1, and stay out of this session otherwise.
collect_ignore = [] if os.environ.get("TRITON_INTERPRET") == "1" else ["interpreted"]
