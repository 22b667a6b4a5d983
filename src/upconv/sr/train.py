"""Train an ESPCN ("in the cloud"): random crops and flips, Adam on MSE, a checkpoint per epoch.

One process, or data-parallel with PyTorch DDP when launched by ``torchrun``
(``torchrun --nproc-per-node N -m upconv.sr.train ...``; gloo on CPU, nccl on GPUs).
Every step draws one global batch from a crop plan that is a pure function of
``(seed, epoch)``; rank ``k`` of ``N`` takes crops ``k, k + N, ...``. DDP averages the
gradients, so N processes take the same steps as one process with the same global batch,
and a resumed run continues exactly where the checkpoint left off.

Checkpoints are ``torch.save`` of tensors and plain containers (weights, optimizer, epoch,
config, history), written atomically and loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_write
from .datasets import SRPair, crop_plan, gather_crops, training_data
from .evaluate import model_y, y_scores
from .images import bicubic_upscale
from .models import ESPCN
from .pretrained import save_model

CHECKPOINT_FORMAT = "upconv-espcn-checkpoint/1"
CPU = torch.device("cpu")


@dataclass(frozen=True)
class TrainConfig:
    """What defines a training run (stored in every checkpoint).

    ``patch``: low-res crop side in pixels; ``steps``: optimizer steps per epoch;
    ``batch_size``: the global batch (split evenly over data-parallel processes).
    """

    data: str = "bundled"
    scale: int = 3
    upsampler: str = "subpixel"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    patch: int = 24
    steps: int = 100
    seed: int = 0

    def check(self, world_size: int = 1) -> TrainConfig:
        """Return self, or raise ValueError naming the bad setting."""
        if self.upsampler not in ("subpixel", "resize"):
            raise ValueError(f"upsampler must be 'subpixel' or 'resize', got {self.upsampler!r}")
        for name in ("scale", "epochs", "batch_size", "patch", "steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by the number of "
                             f"processes ({world_size})")
        return self


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = CPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), else run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Distributed(rank, world, device)


def load_checkpoint(path: str | os.PathLike[str]) -> dict:
    """A training checkpoint (no pickled code is executed); ValueError when it is not one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable training checkpoint ({err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an upconv training checkpoint ({CHECKPOINT_FORMAT})")
    return ckpt


def _config_mismatch(saved: dict, config: TrainConfig) -> list[str]:
    ours = asdict(config)
    return [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}"
            for k, v in ours.items() if k != "epochs" and saved.get(k) != v]


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Cosine decay from ``config.lr`` (epoch 0) towards ``config.lr / 100`` (last epoch)."""
    progress = epoch / max(1, config.epochs - 1)
    return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def validation_psnr(model: nn.Module, pairs: list[SRPair], scale: int) -> float:
    """Mean Y PSNR (dB, border ``scale`` cropped) of ``model`` on ``pairs``."""
    was_training = model.training
    model.eval()
    scores = [y_scores(model_y(model, p), p.hr[0].numpy(), scale)[0] for p in pairs]
    model.train(was_training)
    return float(sum(scores) / len(scores))


def _param_checksum(model: nn.Module) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in model.parameters()])


def train(
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    export: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict:
    """Train for ``config.epochs`` epochs; checkpoint to ``out`` each epoch; export safetensors.

    ``resume``: continue the checkpoint at ``out`` (same config; ``epochs`` may grow).
    ``export`` defaults to ``out`` with suffix ``.safetensors``. Returns the final checkpoint
    dict (rank 0's view; other ranks return the same keys without writing files).
    """
    env = init_distributed()
    result = _train(config, Path(out), env, resume=resume, export=export, log=log,
                    progress=progress)
    if env.world_size > 1 and dist.is_initialized():
        # Every rank finishes its collectives and rank 0 its file writes before any rank tears
        # its gloo connections down (one rank leaving early once aborted rank 0 at exit). After
        # an exception a collective teardown could deadlock, so it happens on success only.
        dist.barrier()
        dist.destroy_process_group()
    return result


def _train(config: TrainConfig, out: Path, env: Distributed, *, resume: bool,
           export: str | os.PathLike[str] | None, log: Callable[[str], None],
           progress: bool) -> dict:
    config.check(env.world_size)
    export_path = Path(export) if export is not None else out.with_suffix(".safetensors")
    if out.suffix == ".safetensors":
        raise ValueError(f"--out {out} is the checkpoint (.pt); the safetensors export goes "
                         "next to it")
    start_epoch, history, ckpt = 0, [], None
    if resume:
        if not out.is_file():
            raise ValueError(f"--resume: no checkpoint at {out}")
        ckpt = load_checkpoint(out)
        bad = _config_mismatch(ckpt["config"], config)
        if bad:
            raise ValueError(f"{out} was trained with other settings ({'; '.join(bad)}); "
                             "resume with the same settings or start a new --out")
        start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
    elif out.exists():
        raise ValueError(f"{out} exists; pass --resume to continue it, or choose another --out")
    if not out.parent.is_dir():
        raise ValueError(f"output folder {out.parent} does not exist")

    train_pairs, val_pairs = training_data(config.data, config.scale)
    if not val_pairs:
        raise ValueError("no validation images")
    torch.manual_seed(config.seed)
    model = ESPCN(config.scale, config.upsampler).to(env.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    net: nn.Module = model
    if env.world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    log(f"rank {env.rank} of {env.world_size}: {len(train_pairs)} training images, "
        f"{config.batch_size // env.world_size} crops per step on {env.device}")

    if env.is_main and start_epoch == 0:
        bicubic = [y_scores(bicubic_upscale(p.lr[0].numpy(), config.scale), p.hr[0].numpy(),
                            config.scale)[0] for p in val_pairs]
        log(f"validation: {len(val_pairs)} image(s), bicubic PSNR "
            f"{sum(bicubic) / len(bicubic):.3f} dB")
    bar = _progress_bar(progress and env.is_main)
    task = bar.add_task("training", total=(config.epochs - start_epoch) * config.steps)
    state: dict = ckpt or {}
    with bar:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            plan = crop_plan(train_pairs, config.patch, config.steps * config.batch_size,
                             config.seed, epoch).reshape(config.steps, config.batch_size, -1)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, epoch)
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
            for step in range(config.steps):
                lr, hr = gather_crops(train_pairs, plan[step, env.rank :: env.world_size],
                                      config.patch, config.scale)
                loss = F.mse_loss(net(lr.to(env.device)), hr.to(env.device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach()
                bar.advance(task)
            if env.world_size > 1:
                dist.all_reduce(loss_sum)
            train_loss = float(loss_sum) / (config.steps * env.world_size)
            seconds = time.perf_counter() - t0
            if env.is_main:
                val = validation_psnr(model, val_pairs, config.scale)
                history.append({"epoch": epoch + 1, "loss": train_loss, "val_psnr": val,
                                "seconds": seconds})
                state = {
                    "format": CHECKPOINT_FORMAT,
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "config": asdict(config),
                    "history": history,
                    "world_size": env.world_size,
                }
                atomic_write(out, lambda f, s=state: torch.save(s, f))
                bar.console.print(f"epoch {epoch + 1}/{config.epochs}  loss {train_loss:.6f}  "
                                  f"val PSNR {val:.3f} dB  {seconds:.1f} s  -> {out}",
                                  soft_wrap=True)

    if env.world_size > 1:
        sums = [torch.zeros(len(list(model.parameters())), dtype=torch.float64)
                for _ in range(env.world_size)]
        dist.all_gather(sums, _param_checksum(model).cpu())
        if any(not torch.equal(s, sums[0]) for s in sums):
            raise RuntimeError("data-parallel ranks ended with different parameters")
        log(f"rank {env.rank}: parameters in sync across {env.world_size} ranks")
    if env.is_main:
        total = sum(h["seconds"] for h in history)
        save_model(model.cpu(), export_path, data=config.data, epochs=config.epochs,
                   steps=config.steps, batch_size=config.batch_size, patch=config.patch,
                   lr=config.lr, seed=config.seed, train_seconds=round(total, 1),
                   val_psnr=history[-1]["val_psnr"] if history else None)
        log(f"exported {export_path} (training time {total:.0f} s)")
    return state


def _progress_bar(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress("[progress.description]{task.description}", BarColumn(),
                    MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled)


def _worker_exit(code: object) -> None:
    """Leave a torchrun worker without interpreter finalization (exit status ``code``).

    After ``destroy_process_group`` gloo's C++ threads can still be alive while Python tears
    down; under load a rank then died with "terminate called without an active exception"
    after a successful run. Files are closed by now (checkpoints are written atomically), so
    skipping finalization loses nothing; output streams are flushed first.
    """
    if isinstance(code, str):
        print(code, file=sys.stderr)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":  # python -m upconv.sr.train / torchrun -m upconv.sr.train
    from ..cli.sr import train as _train_command

    try:
        _train_command(prog_name="python -m upconv.sr.train")
    except SystemExit as stop:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            raise
        _worker_exit(stop.code)
