"""Keep freed memory for reuse: glibc's ``mallopt`` for long upscaling runs.

PyTorch takes CPU tensors from ``malloc``. glibc serves blocks above its mmap threshold (at
most 32 MiB by its own adaptive rule) with fresh ``mmap`` s and returns them to the system on
``free``, so every network call faults its large activations back in, page by page. For a
video or a folder, that is most of the system time: a 50-frame 540p → 1080p ×2 video
(``--fast``) measured 35 s of system time in 15.6 million page faults for 46 s of wall clock.
Raising the mmap and trim thresholds keeps freed blocks in the heap for the next call: the
same run took 1 s of system time at 1.6-1.8× the frames/s, and peak RSS stayed at 1.1 GB for
50 and for 100 frames. ``upconv upscale --fast`` (and its Ray workers with ``--fast``) calls
:func:`keep_freed_memory` for itself; a program of your own calls it if it wants the same.

Not with the exact default kernels: PyTorch's native convolutions allocate buffers whose sizes
vary from tile to tile, and with them kept the heap grew with the clip (peak RSS 1.5 GB
without the setting; with it 2.3 GB at 50 frames and 3.9 GB at 100, though 2.2× the frames/s).
"""

from __future__ import annotations

import ctypes
import sys

#: ``mallopt`` parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap and are kept for reuse once freed (bytes)
DEFAULT_LIMIT = 1 << 30


def keep_freed_memory(limit: int = DEFAULT_LIMIT) -> bool:
    """Ask glibc to serve blocks up to ``limit`` bytes from the heap and to keep up to
    ``limit`` bytes of freed heap memory instead of returning it to the system. True if glibc
    took both settings; False elsewhere (other C libraries, other systems): nothing changes."""
    if not 0 < limit < 2**31:
        raise ValueError(f"limit must be in (0, 2**31) bytes, got {limit}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, limit) == 1 and mallopt(M_TRIM_THRESHOLD, limit) == 1
