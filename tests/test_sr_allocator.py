"""upconv.sr.allocator: glibc keeps freed blocks for reuse once the upscaler asks it to."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from upconv.sr.allocator import keep_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# A child process: repeated 64 MiB allocations, freed after each use, counting minor faults.
CHILD = textwrap.dedent("""
    import resource, sys, torch
    from upconv.sr.allocator import keep_freed_memory
    took = keep_freed_memory() if sys.argv[1] == "keep" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 2**20).fill_(1.0)   # warm the allocator once
    before = faults()
    for _ in range(8):
        torch.empty(16 * 2**20).fill_(1.0)   # 64 MiB, freed at once
    print(took, faults() - before)
""")


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_back_in():
    took, kept = _faults("keep")
    _, default = _faults("default")
    assert took == "True"
    # 8 × 64 MiB is 131 072 pages: faulted in every time by default; with the setting the
    # heap keeps the block (measured: one block's 16 384 pages at most)
    assert default > 100_000, default
    assert kept <= default / 4, (kept, default)


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="limit"):
        keep_freed_memory(0)
    with pytest.raises(ValueError, match="limit"):
        keep_freed_memory(2**31)


def test_the_fast_upscaler_and_its_ray_workers_ask_for_it(tmp_path, monkeypatch):
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    import upconv.sr.allocator as allocator
    from upconv.cli import main
    from upconv.sr.batch import UpscaleWorker
    from upconv.sr.pretrained import load_pretrained

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "a.png")
    for extra in ([], ["--fast"]):  # exact kernels: not asked (their heap would grow)
        result = CliRunner().invoke(main, ["upscale", str(tmp_path / "a.png"), "-o",
                                           str(tmp_path / f"out{len(extra)}"), "--scale", "2",
                                           *extra])
        assert result.exit_code == 0, result.output
    assert calls == [1]
    threads = torch.get_num_threads()
    try:
        UpscaleWorker(lambda: load_pretrained("espcn-x2"), None, True, 1)
        assert calls == [1]
        UpscaleWorker(lambda: load_pretrained("espcn-x2"), None, False, 1)
    finally:
        torch.set_num_threads(threads)
    assert calls == [1, 1]
