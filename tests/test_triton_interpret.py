"""Run the Triton kernel's interpreter tests (tests/interpreted) in a child process.

Triton decides whether a function is interpreted when it is imported and decorated, and
PyTorch's Dynamo imports Triton, so ``TRITON_INTERPRET=1`` has to be set before the process
starts; the child gets it, this session does not. The child's report is shown on failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def test_kernel_in_triton_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    src = str(TESTS.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(TESTS / "interpreted"), "-p", "no:cacheprovider",
         "--durations=5"],
        cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout[-20000:] + proc.stderr[-5000:]
    assert proc.returncode == 0, report
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, report
