"""Collections larger than one machine: upscale a folder tree on Ray Data.

``upscale_collection(IN_DIR, OUT_DIR, factory)`` lists the images under ``IN_DIR`` (sub-folders
included, ``OUT_DIR`` left out when it lies inside) on the driver, and hands their paths to
a Ray Data pipeline whose ``map_batches`` stage is an actor pool: each actor builds the
model once (``factory()``) and then reads, upscales and writes its images itself, so pixels
never travel through the driver. Inputs and outputs must therefore be on a file system all
workers see at the same paths (a laptop's disk, NFS, a cluster's shared volume).

Resumable: an output is *complete* when it exists, is no older than its input, decodes
fully and has ``r`` times the input's (oriented) size. Outputs are written atomically (temp
file in the target folder, then rename), so an interrupted run leaves no partial file under
an output's name; the other checks catch outputs of an input changed since, and files
damaged or replaced by something else. A rerun skips complete outputs without touching
them and redoes the rest.

Failures never stop the run: each failed input is listed, with the reason, in
``OUT_DIR/upconv-manifest.json`` (rewritten atomically at the end of every run, with the
counts of done, skipped and failed images).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from torch import nn

from .atomic import atomic_write_bytes
from .imageio import default_format, read_picture, write_picture
from .images import IMAGE_SUFFIXES
from .upscale import image_suffix, upscale_picture

#: The manifest's file name inside the output folder.
MANIFEST = "upconv-manifest.json"

#: Source format a suffix implies (the default output format follows it).
_SUFFIX_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class Job:
    """One input image and where its output goes."""

    src: str
    dst: str
    format: str


@dataclass
class BatchReport:
    """What a run did; ``failures``: ``{"input", "output", "error"}`` per failed image."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    manifest: Path | None = None
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.done + self.skipped + self.failed

    def describe(self) -> str:
        return (f"{self.total} image(s): {self.done} upscaled, {self.skipped} already "
                f"complete (skipped), {self.failed} failed; {self.seconds:.1f} s; "
                f"manifest: {self.manifest}")


def plan_jobs(in_dir: Path, out_dir: Path, scale: int, format: str | None = None
              ) -> tuple[list[Job], list[dict[str, str]]]:
    """``(jobs, failures)`` for the images under ``in_dir`` (sorted, hidden files and
    ``out_dir`` left out); an output name that two inputs would share, or that is an input,
    is a failure of the later input."""
    in_dir, out_dir = in_dir.resolve(), out_dir.resolve()
    sources: list[Path] = []
    for root, dirs, files in os.walk(in_dir):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (here / d).resolve() != out_dir)
        sources.extend(here / f for f in sorted(files)
                       if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES)
    inputs = set(sources)
    jobs: list[Job] = []
    failures: list[dict[str, str]] = []
    claimed: dict[Path, Path] = {}
    for src in sources:
        fmt = default_format(_SUFFIX_FORMATS.get(src.suffix.lower(), "other"), format)
        rel = src.relative_to(in_dir)
        dst = out_dir / rel.parent / f"{src.stem}-x{scale}{image_suffix(src, fmt)}"
        if dst in inputs or dst in claimed:
            other = f"the input {dst}" if dst in inputs else f"the output of {claimed[dst]}"
            failures.append({"input": str(src), "output": str(dst),
                             "error": f"output name {dst.name} is taken by {other}; "
                                      "rename one or choose --format"})
            continue
        claimed[dst] = src
        jobs.append(Job(str(src), str(dst), fmt))
    return jobs, failures


def _image_size(path: Path) -> tuple[int, int, int]:
    """``(width, height, frames)``: the size as displayed (EXIF orientation 5..8 swaps
    it) and the number of frames or pages, from the headers."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:  # the header only: no pixel data is read
            w, h = img.size
            frames = getattr(img, "n_frames", 1)
            if img.format == "TIFF":
                orientation = img.tag_v2.get(0x0112, 1)
            elif "exif" in img.info:  # EXIF before the pixels (JPEG, PNG eXIf before IDAT)
                exif = Image.Exif()
                exif.load(img.info["exif"])
                orientation = exif.get(0x0112, 1)
            else:
                orientation = 1
    except UnidentifiedImageError:  # e.g. float RGB TIFF: tifffile reads its header
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            w, h = page.imagewidth, page.imagelength
            orientation = page.orientation
            frames = len(tif.pages)
    return (h, w, frames) if int(orientation or 1) in (5, 6, 7, 8) else (w, h, frames)


def is_complete(src: str | os.PathLike[str], dst: str | os.PathLike[str], scale: int) -> bool:
    """Whether ``dst`` is a finished output of ``src``: it exists, is no older than ``src``,
    decodes fully, is ``scale`` times ``src``'s displayed size and has as many frames (an
    output of a version that kept only an animation's first frame is not complete)."""
    src, dst = Path(src), Path(dst)
    try:
        if dst.stat().st_mtime_ns < src.stat().st_mtime_ns:
            return False
        w, h, frames = _image_size(src)
        out = read_picture(dst)
        # an animated PNG merges identical consecutive frames (their times add up)
        merged = out.durations is not None and 1 < out.frame_count < frames
        return out.size == (scale * w, scale * h) and (out.frame_count == frames or merged)
    except Exception:  # anything unreadable is simply not complete
        return False


class UpscaleWorker:
    """A Ray Data actor: builds the model once, then upscales batches of jobs in place.

    Batches are numpy columns ``src``, ``dst``, ``format``; the result adds ``status``
    (``done`` / ``skipped`` / ``failed``) and ``message`` (the error, or notes on metadata).
    """

    def __init__(self, factory: Callable[[], nn.Module], tile: int | None, exact: bool,
                 threads: int) -> None:
        import torch

        from .allocator import keep_freed_memory

        torch.set_num_threads(threads)
        if not exact:
            keep_freed_memory()
        self.model = factory()
        self.scale = int(self.model.scale)
        self.tile, self.exact = tile, exact

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.one(str(s), str(d), str(f))
                   for s, d, f in zip(batch["src"], batch["dst"], batch["format"], strict=True)]
        return {"src": batch["src"], "dst": batch["dst"],
                "status": np.array([r[0] for r in results]),
                "message": np.array([r[1] for r in results])}

    def one(self, src: str, dst: str, fmt: str) -> tuple[str, str]:
        if is_complete(src, dst, self.scale):
            return "skipped", ""
        try:
            pic = read_picture(src)
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            notes = write_picture(upscale_picture(pic, self.model, self.tile, self.exact),
                                  dst, fmt)
        except Exception as err:  # one bad file must not stop the collection
            message = str(err) if src in str(err) else f"{src}: {err}"
            return "failed", message if str(err) else f"{src}: {type(err).__name__}"
        return "done", "; ".join(notes)


def _connect(address: str | None) -> bool:
    """Connect to Ray (``None`` / ``"local"``: a new local instance); True if we started it.

    A local instance listens on the loopback address only (Ray's own switch for single-node
    use, read when Ray is first imported), not on the machine's network addresses.
    """
    import logging
    import sys

    if address in (None, "local") and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return False
    try:
        ray.init(address="local" if address in (None, "local") else address,
                 include_dashboard=False, logging_level=logging.ERROR,
                 configure_logging=True, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise OSError(f"cannot start or reach Ray at {address or 'local'}: {err}") from None
    return True


def upscale_collection(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    factory: Callable[[], nn.Module],
    *,
    scale: int,
    tile: int | None = 256,
    exact: bool = True,
    format: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    batch_size: int = 8,
    echo: Callable[[str], None] = print,
    progress: bool = True,
) -> BatchReport:
    """Upscale every image under ``in_dir`` into the same tree under ``out_dir`` on Ray Data.

    ``factory``: builds the model on each actor (must pickle: a module-level function or a
    ``functools.partial`` of one). ``address``: ``None`` or ``"local"`` starts a local Ray
    instance; ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` joins a cluster. An
    already initialised Ray is used as it is. ``workers``: actors (model replicas), default
    one per ``threads`` CPUs of the cluster. Returns a :class:`BatchReport`; the manifest is
    written to ``out_dir`` whatever happened to the images.
    """
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise OSError("collections on Ray need Ray Data: pip install 'upconv[ray]'")
    from .progress import progress_bar

    in_path, out_path = Path(in_dir), Path(out_dir)
    if not in_path.is_dir():
        raise ValueError(f"{in_path}: not a folder")
    try:
        out_path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot create output folder {out_path}: {err.strerror}") from None
    start = time.perf_counter()
    jobs, failures = plan_jobs(in_path, out_path, scale, format)
    report = BatchReport(failed=len(failures), failures=list(failures))
    for failure in failures:
        echo(f"failed: {failure['error']} ({failure['input']})")
    started = _connect(address)
    import ray
    import ray.data

    try:
        if jobs:
            _run(jobs, factory, report, tile=tile, exact=exact, workers=workers,
                 threads=threads, batch_size=batch_size, echo=echo,
                 bar=progress_bar(enabled=progress), ray=ray)
    finally:
        if started:
            ray.shutdown()
    report.seconds = time.perf_counter() - start
    report.manifest = write_manifest(out_path, report, in_dir=in_path, scale=scale,
                                     format=format)
    return report


def _run(jobs: list[Job], factory, report: BatchReport, *, tile, exact, workers, threads,
         batch_size, echo, bar, ray) -> None:
    import logging

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours is below
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)  # Ray Data's plan and progress lines: our bar says it
    try:
        _stream(jobs, factory, report, tile=tile, exact=exact, workers=workers,
                threads=threads, batch_size=batch_size, echo=echo, bar=bar, ray=ray)
    finally:
        data_log.setLevel(level)


def _stream(jobs: list[Job], factory, report: BatchReport, *, tile, exact, workers, threads,
            batch_size, echo, bar, ray) -> None:
    if workers is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(len(jobs), cpus // threads))
    items = [{"src": j.src, "dst": j.dst, "format": j.format} for j in jobs]
    dataset = ray.data.from_items(items).map_batches(
        UpscaleWorker, fn_constructor_args=(factory, tile, exact, threads),
        compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch_size,
        batch_format="numpy", num_cpus=threads)
    with bar:
        task = bar.add_task(f"upscaling on {workers} Ray worker(s)", total=len(jobs),
                            unit="images")
        for row in dataset.iter_rows():
            status = str(row["status"])
            if status == "failed":
                report.failed += 1
                report.failures.append({"input": str(row["src"]), "output": str(row["dst"]),
                                        "error": str(row["message"])})
                echo(f"failed: {row['message']}")
            elif status == "skipped":
                report.skipped += 1
            else:
                report.done += 1
            bar.advance(task)


def write_manifest(out_dir: Path, report: BatchReport, **run: object) -> Path:
    """Write ``OUT_DIR/upconv-manifest.json`` atomically: the run, its counts, its failures."""
    body = {
        "version": 1,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": {k: str(v) if isinstance(v, Path) else v for k, v in run.items()},
        "totals": {"done": report.done, "skipped": report.skipped, "failed": report.failed},
        "seconds": round(report.seconds, 3),
        "failed": sorted(report.failures, key=lambda f: f["input"]),
    }
    path = out_dir / MANIFEST
    atomic_write_bytes(path, json.dumps(body, indent=2).encode() + b"\n")
    return path
