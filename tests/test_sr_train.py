"""Training: checkpoints, exact resume, export, bad settings, and data-parallel (DDP) runs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from upconv.cli import main
from upconv.sr import ESPCN, load_pretrained
from upconv.sr.datasets import crop_plan, folder_splits, gather_crops, load_pairs
from upconv.sr.train import TrainConfig, load_checkpoint, train

TINY = dict(scale=2, epochs=2, batch_size=4, lr=1e-3, patch=8, steps=3, seed=7)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Five small smooth images (grey and RGB) in a plain folder."""
    folder = tmp_path_factory.mktemp("train-images")
    rng = np.random.default_rng(0)
    for i in range(5):
        base = rng.random((12, 14, 3))
        img = Image.fromarray((base * 255).astype(np.uint8)).resize((42, 36),
                                                                   Image.Resampling.BICUBIC)
        (img.convert("L") if i % 2 else img).save(folder / f"img{i}.png")
    return folder


def _config(image_dir, **kw) -> TrainConfig:
    return TrainConfig(data=str(image_dir), **{**TINY, **kw})


def _quiet(_msg: str) -> None:
    pass


def test_checkpoint_and_export(image_dir, tmp_path):
    out = tmp_path / "run.pt"
    train(_config(image_dir), out, log=_quiet, progress=False)
    ckpt = load_checkpoint(out)  # weights_only=True
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    assert ckpt["config"]["scale"] == 2 and ckpt["config"]["data"] == str(image_dir)
    assert set(ckpt["optimizer"]) == {"state", "param_groups"}
    assert all(np.isfinite(h["val_psnr"]) for h in ckpt["history"])
    model = load_pretrained(tmp_path / "run.safetensors")
    assert model.scale == 2 and model.upsampler == "subpixel"
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt", "run.safetensors"]


def test_resume_continues_exactly(image_dir, tmp_path):
    straight = train(_config(image_dir), tmp_path / "a.pt", log=_quiet, progress=False)
    train(_config(image_dir, epochs=1), tmp_path / "b.pt", log=_quiet, progress=False)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 1
    resumed = train(_config(image_dir), tmp_path / "b.pt", resume=True, log=_quiet,
                    progress=False)
    assert resumed["epoch"] == 2
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    moments = straight["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(moments, resumed["optimizer"]["state"][0]["exp_avg"])


def test_seed_changes_the_run(image_dir, tmp_path):
    a = train(_config(image_dir, epochs=1), tmp_path / "a.pt", log=_quiet, progress=False)
    b = train(_config(image_dir, epochs=1, seed=8), tmp_path / "b.pt", log=_quiet,
              progress=False)
    assert not torch.equal(a["model"]["conv1.weight"], b["model"]["conv1.weight"])


def test_refusals(image_dir, tmp_path):
    out = tmp_path / "run.pt"
    with pytest.raises(ValueError, match="no checkpoint"):
        train(_config(image_dir), out, resume=True, log=_quiet, progress=False)
    train(_config(image_dir, epochs=1), out, log=_quiet, progress=False)
    with pytest.raises(ValueError, match="exists; pass --resume"):
        train(_config(image_dir), out, log=_quiet, progress=False)
    with pytest.raises(ValueError, match=r"lr: checkpoint 0.001, now 0.01"):
        train(_config(image_dir, lr=1e-2), out, resume=True, log=_quiet, progress=False)
    with pytest.raises(ValueError, match="divisible"):
        _config(image_dir, batch_size=5).check(world_size=2)
    with pytest.raises(ValueError, match="does not exist"):
        train(_config(image_dir), tmp_path / "missing" / "x.pt", log=_quiet, progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_crops_pair_up_and_flip_together(image_dir):
    pairs = load_pairs(sorted(image_dir.iterdir()), 2)
    plan = crop_plan(pairs, 8, 32, seed=1, epoch=0)
    assert torch.equal(plan, crop_plan(pairs, 8, 32, seed=1, epoch=0))
    assert not torch.equal(plan, crop_plan(pairs, 8, 32, seed=1, epoch=1))
    lr, hr = gather_crops(pairs, plan, 8, 2)
    assert lr.shape == (32, 1, 8, 8) and hr.shape == (32, 1, 16, 16)
    # each low-res crop is the 2×2 box average (≈ bicubic downscale) of its high-res crop
    box = torch.nn.functional.avg_pool2d(hr, 2)
    assert (box - lr).abs().mean() < 0.02
    assert (box - lr.flip(-1)).abs().mean() > (box - lr).abs().mean()


def test_cli_train_reports_bad_data(tmp_path):
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path), "--out",
                                       str(tmp_path / "x.pt")])
    assert result.exit_code != 0
    assert "no image files" in result.output


def _train_args(image_dir, out) -> list[str]:
    return ["--data", str(image_dir), "--out", str(out), "--threads", "1", "--no-progress",
            *(f"--{k.replace('_', '-')}={v}" for k, v in TINY.items())]


def test_ddp_two_processes_match_one(image_dir, tmp_path):
    single = tmp_path / "single.pt"
    assert CliRunner().invoke(main, ["train", *_train_args(image_dir, single)]).exit_code == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "upconv.sr.train", *_train_args(image_dir, tmp_path / "ddp.pt")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "rank 0 of 2" in log and "rank 1 of 2" in log
    assert "rank 1: parameters in sync across 2 ranks" in log
    one, two = load_checkpoint(single), load_checkpoint(tmp_path / "ddp.pt")
    assert two["world_size"] == 2
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, atol=2e-6, rtol=1e-5)
    torch.manual_seed(TINY["seed"])
    init = ESPCN(TINY["scale"]).state_dict()  # what training started from
    assert (one["model"]["conv1.weight"] - init["conv1.weight"]).abs().max() > 1e-4


def test_ddp_worker_failure_exits_nonzero(tmp_path):
    # Workers leave through os._exit; a failed run must still report its error and status.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "upconv.sr.train", "--data", str(tmp_path / "missing"), "--out",
           str(tmp_path / "x.pt"), "--no-progress"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode != 0
    assert "missing" in run.stdout + run.stderr
    assert not (tmp_path / "x.pt").exists()


def test_folder_splits(image_dir, tmp_path):
    train_files, val_files = folder_splits(image_dir)  # plain folder: every tenth held out
    assert [p.name for p in val_files] == ["img0.png"]
    assert sorted(p.name for p in train_files) == ["img1.png", "img2.png", "img3.png", "img4.png"]
    bsd = tmp_path / "BSDS300" / "images"
    for split, names in (("train", ["1.jpg", "2.jpg"]), ("test", ["3.jpg"])):
        (bsd / split).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (40, 40)).save(bsd / split / name)
    train_files, val_files = folder_splits(tmp_path / "BSDS300")
    assert [p.name for p in train_files] == ["1.jpg", "2.jpg"]
    assert [p.name for p in val_files] == ["3.jpg"]
