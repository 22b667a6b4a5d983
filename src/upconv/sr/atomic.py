"""Atomic file writes: write a temp file in the target's folder, then ``os.replace`` it.

A reader never sees a half-written file, and a failed write leaves the old file untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temp file next to ``path``, fsync it, then rename it to ``path``.

    Raises ``OSError`` (with the folder named) when the folder cannot be written.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temp file path next to ``path`` (same suffix, so tools that go by the suffix, such
    as FFmpeg, pick the right format) for the block to write; renamed to ``path`` when the
    block succeeds, removed when it fails."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                   dir=folder)
    except OSError as err:
        raise OSError(f"cannot write to folder {str(folder)!r}: {err.strerror or err}") from err
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
