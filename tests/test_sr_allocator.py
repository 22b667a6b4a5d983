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

# A child process: one 64 MiB tensor, where glibc serves it from and what it keeps once it is
# freed (mallinfo2, glibc >= 2.33: hblkhd = bytes in mmapped blocks, arena = bytes of heap).
# Counting page faults over repeated allocations (what the setting is for) is not a unit test:
# whether a freed block fits the next aligned request depends on the small allocations made
# in between, which vary from machine to machine (CI once re-faulted 6 of 8 blocks).
CHILD = textwrap.dedent("""
    import ctypes, sys, torch
    from upconv.sr.allocator import keep_freed_memory
    class Info(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks",
                    "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = Info
    took = keep_freed_memory() if sys.argv[1] == "keep" else None
    before = mallinfo2()
    t = torch.empty(16 * 2**20)   # 64 MiB
    t.fill_(1.0)
    during = mallinfo2()
    del t
    after = mallinfo2()
    print(took, during.hblkhd - before.hblkhd, after.arena - before.arena)
""")
MIB = 2**20


def _child(mode: str) -> tuple[str, int, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1]), int(out[2])


def _has_mallinfo2() -> bool:
    import ctypes

    return GLIBC and hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.mark.skipif(not _has_mallinfo2(), reason="mallopt and mallinfo2 are glibc's (>= 2.33)")
def test_large_blocks_come_from_the_heap_and_stay_there_once_freed():
    took, mapped, kept = _child("keep")
    assert took == "True"
    assert mapped < MIB, mapped           # not a fresh mmap (munmapped again on free) ...
    assert kept >= 64 * MIB, kept         # ... but heap, still held after the free
    _, mapped, kept = _child("default")   # glibc's default: its own mmap, returned on free
    assert mapped >= 64 * MIB, mapped
    assert kept < 64 * MIB, kept


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
