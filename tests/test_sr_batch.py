"""Collections on Ray Data: a local 2-CPU Ray instance started here, the resume scenario of
issue 14 (200 images; rerun after deleting 20 outputs and corrupting 5 inputs), the
completeness check, and the plan of jobs."""

from __future__ import annotations

import functools
import json
import os
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from upconv.cli import main
from upconv.cli.sr import _build_model
from upconv.sr.batch import MANIFEST, is_complete, plan_jobs, upscale_collection
from upconv.sr.imageio import read_picture
from upconv.sr.pretrained import load_for_scale
from upconv.sr.upscale import upscale_picture

# a local Ray listens on the loopback address only (Ray reads this switch on import)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")  # the [ray] extra is part of [test]: this never skips there

RNG = np.random.default_rng(200)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def _collection(folder, count: int) -> list:
    """``count`` tiny images (16×16 RGB PNG, a few JPEG and grey, some in a sub-folder)."""
    paths = []
    for i in range(count):
        sub = folder / ("set-b" if i % 4 == 3 else "set-a")
        sub.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        if i % 10 == 1:
            path = sub / f"img{i:03d}.jpg"
        else:
            path = sub / f"img{i:03d}.png"
            img = img.convert("L") if i % 10 == 2 else img
        img.save(path)
        paths.append(path)
    return paths


def _stamp(paths) -> dict:
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def test_resume_scenario_of_issue_14(tmp_path, local_ray):
    src, out = tmp_path / "in", tmp_path / "out"
    inputs = _collection(src, 200)
    factory = functools.partial(_build_model, None, 2, "conv")
    first = upscale_collection(src, out, factory, scale=2, progress=False, echo=lambda m: None)
    assert (first.done, first.skipped, first.failed) == (200, 0, 0)
    outputs = sorted(p for p in out.rglob("*-x2.*"))
    assert len(outputs) == 200 and not any(p.name.startswith(".") for p in out.rglob("*"))
    assert {Image.open(p).size for p in outputs} == {(32, 32)}
    # the workers write what the one-machine path writes
    model = load_for_scale(None, 2)
    for name in ("set-a/img000", "set-a/img001", "set-a/img002"):
        [written] = out.glob(f"{name}-x2.*")
        [source] = src.glob(f"{name}.*")
        assert np.array_equal(read_picture(written).pixels,
                              upscale_picture(read_picture(source), model, 256).pixels)
    # delete 20 outputs, corrupt 5 other inputs
    deleted = outputs[::10]
    corrupt = [p for p in inputs if not any(d.name.startswith(p.stem + "-") for d in deleted)
               ][3:200:40]
    assert len(deleted) == 20 and len(corrupt) == 5
    kept = [p for p in outputs if p not in deleted]
    before = _stamp(kept)
    for p in deleted:
        p.unlink()
    time.sleep(0.05)  # the corrupted inputs are newer than their outputs
    for p in corrupt:  # cut inside the pixel data: the header (and size) still reads
        data = p.read_bytes()
        p.write_bytes(data[: len(data) * 2 // 3])
        assert Image.open(p).size == (16, 16)
    input_stamps = _stamp(inputs)
    # the rerun, through the command line: --ray IN_DIR (no address) -o OUT_DIR
    result = CliRunner().invoke(main, ["upscale", "--ray", str(src), "-o", str(out),
                                       "--scale", "2", "--algorithm", "conv"])
    assert result.exit_code != 0, result.output
    assert "20 upscaled, 175 already complete (skipped), 5 failed" in result.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["totals"] == {"done": 20, "skipped": 175, "failed": 5}
    assert sorted(f["input"] for f in manifest["failed"]) == sorted(str(p) for p in corrupt)
    assert all(str(f["input"]) in f["error"] for f in manifest["failed"])
    assert all(p.exists() for p in deleted)  # exactly those 20 redone ...
    assert _stamp(kept) == before  # ... every other output untouched (inode and mtime)
    assert _stamp(inputs) == input_stamps  # and the inputs too
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(
        [MANIFEST, *(p.name for p in outputs)])


def test_is_complete(tmp_path):
    src, dst = tmp_path / "a.png", tmp_path / "a-x2.png"
    Image.new("RGB", (10, 6)).save(src)
    assert not is_complete(src, dst, 2)  # missing
    Image.new("RGB", (20, 12)).save(dst)
    assert is_complete(src, dst, 2)
    assert not is_complete(src, dst, 3)  # another scale's size
    data = dst.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    assert not is_complete(src, dst, 2)  # truncated
    Image.new("RGB", (20, 12)).save(dst)
    old = dst.stat().st_mtime_ns - 10**9
    os.utime(dst, ns=(old, old))
    assert not is_complete(src, dst, 2)  # older than its input
    # an animation: the output needs every frame (an older upconv wrote only the first)
    gif, out = tmp_path / "b.gif", tmp_path / "b-x2.png"
    frames = [Image.new("RGB", (10, 6), (40 * i, 0, 0)) for i in range(3)]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    Image.new("RGB", (20, 12)).save(out)
    assert not is_complete(gif, out, 2)
    big = [f.resize((20, 12)) for f in frames]
    big[0].save(out, save_all=True, append_images=big[1:])
    assert is_complete(gif, out, 2)
    big[0].save(out, save_all=True, append_images=[big[0], big[2]], duration=100)  # merged
    assert Image.open(out).n_frames == 2 and is_complete(gif, out, 2)


def test_plan_leaves_out_the_output_folder_and_flags_clashes(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    Image.new("L", (4, 4)).save(tmp_path / "a.jpg")  # a-x2.png as well
    Image.new("L", (4, 4)).save(tmp_path / "b-x2.png")
    Image.new("L", (4, 4)).save(tmp_path / "b.bmp")  # its output would be the input b-x2.png
    (tmp_path / "x2").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "x2" / "old-x2.png")  # an earlier output
    jobs, failures = plan_jobs(tmp_path, tmp_path, 2)
    assert [os.path.basename(j.dst) for j in jobs] == ["a-x2.png", "b-x2-x2.png",
                                                       "old-x2-x2.png"]
    assert [os.path.basename(f["input"]) for f in failures] == ["a.png", "b.bmp"]
    assert "taken by the output of" in failures[0]["error"]
    assert "taken by the input" in failures[1]["error"]
    jobs, _ = plan_jobs(tmp_path, tmp_path / "x2", 2)  # the output folder is left out
    assert [os.path.basename(j.src) for j in jobs] == ["a.jpg", "b-x2.png", "b.bmp"]


def test_ray_address_or_input_folder():
    from upconv.cli.sr import _is_ray_address

    for address in ("auto", "local", "10.0.0.5:6379", "head-node:6379", "ray://head:10001"):
        assert _is_ray_address(address), address
    for folder in ("photos", "./photos", "/data/photos", "C:photos", "in-dir"):
        assert not _is_ray_address(folder), folder


def test_ray_usage_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["upscale", "--ray", str(tmp_path)])  # the folder, no -o
    assert result.exit_code == 2 and "--ray needs an output folder: -o OUT_DIR" in result.output
    result = runner.invoke(main, ["upscale", "--ray", str(tmp_path), str(tmp_path), "-o", "x"])
    assert result.exit_code == 2 and "--ray takes one input folder" in result.output
    result = runner.invoke(main, ["upscale", str(tmp_path), "--workers", "2"])
    assert result.exit_code == 2 and "--workers is for --ray runs" in result.output
