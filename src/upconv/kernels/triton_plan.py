"""Planning and packing for the Triton REVD2 kernel (pure PyTorch: no Triton needed here).

Vocabulary (as in :mod:`upconv.kernels.revd2`): a *slot* is one output phase of one channel,
``(c, fh, fw)``. Output ``(o_h, o_w)`` of slot ``(c, fh, fw)`` sits at phase-grid point
``(qh, qw)`` with ``o_h = fh + sh·qh − top``, ``o_w = fw + sw·qw − left`` and receives

    Σ_ic Σ_{t_h < Th(fh)} Σ_{t_w < Tw(fw)}
        x[ic, qh − t_h, qw − t_w] · Wd[ic, c, fh + sh·t_h, fw + sw·t_w]

where ``Th(f) = ceil((Kh − f)/sh)`` (:func:`upconv.shapes.taps_per_phase`) is the number of taps
that reach phase ``f``. For one tap ``(t_h, t_w)`` this is a GEMM: phase-grid pixels (M) ×
input channels (K) times a ``(K, slots)`` weight matrix (N). The kernel computes a tile of
pixels for a block of ``block_n`` slots, one tap after another, and writes each output once.

A *launch* packs the weights of the slots it computes as ``(blocks, Th, Tw, Cin_pad, block_n)``
(zero where a slot's tap window is smaller than the launch's, and for padding slots).

* **split**: one launch per tap pattern ``(Th, Tw)``: every multiply-add uses a real tap
  (a resize convolution's phases reach 1 or 2 taps per axis; each group gets exactly its own).
* **merged**: one launch over all slots, sorted by tap pattern, with the largest window: the
  input tile is read once for every phase, at the price of multiplying the zero taps of the
  smaller-window slots that share a block (free on tensor cores when they fill MMA padding).

When every phase reaches the same taps (any sub-pixel layer) the two are the same launch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..shapes import IntPair, Pad4, phase_outputs, taps_per_phase

#: Bias modes of the kernel: no bias; one value per slot (a per-channel bias, or a periodic
#: bias whose period divides the stride, e.g. a sub-pixel layer's); a general periodic bias
#: ``B[c, o_h mod bh, o_w mod bw]`` gathered per output.
BIAS_NONE, BIAS_SLOT, BIAS_GATHER = 0, 1, 2


@dataclass(frozen=True)
class Config:
    """Block sizes of one kernel variant.

    ``block_h × block_w`` phase-grid pixels (M) per program, ``block_n`` slots (N),
    ``block_k`` input channels per step (K); ``dot``: ``tl.dot`` (tensor cores) or the FMA
    path; ``merged``: one launch over all tap patterns (see the module docstring); ``flat``:
    taps and channel steps as one loop (software-pipelined with ``num_stages``) instead of
    unrolled taps; ``shuffle``: the tile is rearranged into output rows before it is stored
    (:func:`shuffle_phases` says where that applies); ``nhwc_input``: an NCHW input is copied
    to channels_last first (one pass over the input, a temporary the input's size) and read
    as such (16-byte loads along the channels instead of one element per thread for every
    shifted tap; a tuning candidate, chosen only where it measures faster).
    """

    block_h: int
    block_w: int
    block_n: int
    block_k: int
    dot: bool
    merged: bool = True
    num_warps: int = 4
    num_stages: int = 2
    flat: bool = False
    shuffle: bool = False
    nhwc_input: bool = False

    @property
    def block_m(self) -> int:
        return self.block_h * self.block_w

    def label(self) -> str:
        kind = "dot" if self.dot else "fma"
        mode = "merged" if self.merged else "split"
        loop = " flat" if self.flat else ""
        store = " shuffle" if self.shuffle else ""
        via = " via-nhwc" if self.nhwc_input else ""
        return (f"{kind} {self.block_h}x{self.block_w}x{self.block_n}x{self.block_k} {mode} "
                f"w{self.num_warps} s{self.num_stages}{loop}{store}{via}")


@dataclass(frozen=True)
class Slots:
    """The slots of one launch in kernel order: int32 ``c``, ``fh``, ``fw`` (``c = −1`` pads the
    last block) and the launch's tap window ``(Th, Tw)``."""

    c: Tensor
    fh: Tensor
    fw: Tensor
    taps: IntPair


@dataclass(frozen=True)
class Launch:
    """One kernel launch: its slots and packed weights ``(blocks, Th, Tw, Cin_pad, block_n)``."""

    slots: Slots
    wpack: Tensor

    @property
    def blocks(self) -> int:
        return self.wpack.shape[0]


def phase_taps(kernel: int, stride: int, pad_before: int, out_len: int) -> list[tuple[int, int]]:
    """Phases of one axis that have outputs, with the taps reaching each: ``[(f, taps)]``."""
    out = []
    for f in range(stride):
        if phase_outputs(f, stride, pad_before, out_len)[2]:
            out.append((f, taps_per_phase(kernel - f, stride) if f < kernel else 0))
    return out


def phase_grid(stride: int, pad_before: int, out_len: int) -> IntPair:
    """Phase-grid range ``[q_lo, q_hi)`` that covers every output of every phase on one axis."""
    ranges = [phase_outputs(f, stride, pad_before, out_len) for f in range(stride)]
    ranges = [(q, n) for _, q, n in ranges if n]
    return min(q for q, _ in ranges), max(q + n for q, n in ranges)


def tap_groups(channels: int, kernel: IntPair, stride: IntPair, padding: Pad4,
               out_size: IntPair) -> list[tuple[IntPair, list[tuple[int, int, int]]]]:
    """Slots grouped by tap pattern, most taps first: ``[((Th, Tw), [(c, fh, fw), ...])]``.

    Within a group slots run channel-major, then phase row, then phase column (adjacent
    slots of one channel write adjacent output columns).
    """
    rows = phase_taps(kernel[0], stride[0], padding[0], out_size[0])
    cols = phase_taps(kernel[1], stride[1], padding[2], out_size[1])
    patterns: dict[IntPair, list[tuple[int, int]]] = {}
    for fh, th in rows:
        for fw, tw in cols:
            patterns.setdefault((th, tw), []).append((fh, fw))
    out = []
    for taps in sorted(patterns, key=lambda t: (-t[0], -t[1])):
        out.append((taps, [(c, fh, fw) for c in range(channels) for fh, fw in patterns[taps]]))
    return out


def launch_slots(groups: list[tuple[IntPair, list[tuple[int, int, int]]]], merged: bool,
                 block_n: int, device: torch.device) -> list[Slots]:
    """The launches' slot lists: all groups in one (merged) or one per group (split)."""
    parts = [groups] if merged else [[g] for g in groups]
    out = []
    for part in parts:
        slots = [s for _, group in part for s in group]
        taps = (max(t[0] for t, _ in part), max(t[1] for t, _ in part))
        pad = -len(slots) % block_n
        table = torch.tensor(slots + [(-1, 0, 0)] * pad, dtype=torch.int32).reshape(-1, 3)
        table = table.to(device)
        out.append(Slots(table[:, 0].contiguous(), table[:, 1].contiguous(),
                         table[:, 2].contiguous(), taps))
    return out


def pack_weights(weight: Tensor, slots: Slots, stride: IntPair, block_n: int, cin_pad: int,
                 dtype: torch.dtype) -> Tensor:
    """``weight (Cin, C, Kh, Kw)`` → ``(blocks, Th, Tw, cin_pad, block_n)`` in ``dtype``.

    Entry ``[b, t_h, t_w, ic, j]`` is ``Wd[ic, c, fh + sh·t_h, fw + sw·t_w]`` for the slot
    ``(c, fh, fw)`` at position ``b·block_n + j``; zero where that tap leaves the kernel (the
    slot's own window is smaller), for padding slots and for ``ic ≥ Cin``.
    """
    cin, _, kh, kw = weight.shape
    (sh, sw), (th, tw) = stride, slots.taps
    s = slots.c.numel()
    dev = weight.device
    c = slots.c.to(dev, torch.long)
    rows = slots.fh.to(dev, torch.long)[:, None] + sh * torch.arange(th, device=dev)  # (S, Th)
    cols = slots.fw.to(dev, torch.long)[:, None] + sw * torch.arange(tw, device=dev)  # (S, Tw)
    valid = (c >= 0)[:, None, None] & (rows < kh)[:, :, None] & (cols < kw)[:, None, :]
    w = weight.detach().permute(1, 2, 3, 0)  # (C, Kh, Kw, Cin)
    g = w[c.clamp(min=0)[:, None, None], rows.clamp(max=kh - 1)[:, :, None],
          cols.clamp(max=kw - 1)[:, None, :]]  # (S, Th, Tw, Cin)
    g = torch.where(valid[..., None], g, torch.zeros((), dtype=g.dtype, device=dev))
    packed = torch.zeros(s, th, tw, cin_pad, dtype=dtype, device=dev)
    packed[..., :cin] = g.to(dtype)
    return packed.reshape(s // block_n, block_n, th, tw, cin_pad).permute(0, 2, 3, 4, 1) \
        .contiguous()


def cin_padded(cin: int, block_k: int) -> int:
    """``Cin`` rounded up to whole ``block_k`` steps."""
    return -(-cin // block_k) * block_k


def bias_mode(bias: Tensor | None, stride: IntPair) -> int:
    """:data:`BIAS_SLOT` when the bias is constant on every slot, else gather (or none)."""
    if bias is None:
        return BIAS_NONE
    if bias.ndim == 1:
        return BIAS_SLOT
    _, bh, bw = bias.shape
    return BIAS_SLOT if stride[0] % bh == 0 and stride[1] % bw == 0 else BIAS_GATHER


def slot_bias(bias: Tensor, slots: Slots, padding: Pad4) -> Tensor:
    """float32 bias of every slot of a launch (zero for padding slots), for :data:`BIAS_SLOT`.

    Slot ``(c, fh, fw)`` holds outputs ``o_h ≡ fh − top (mod sh)``; a period dividing the
    stride makes ``B[c, o_h mod bh, o_w mod bw] = B[c, (fh − top) mod bh, (fw − left) mod bw]``.
    """
    dev = bias.device
    c = slots.c.to(dev, torch.long)
    b = bias.detach().float()
    if b.ndim == 1:
        vals = b[c.clamp(min=0)]
    else:
        _, bh, bw = b.shape
        rows = (slots.fh.to(dev, torch.long) - padding[0]) % bh
        cols = (slots.fw.to(dev, torch.long) - padding[2]) % bw
        vals = b[c.clamp(min=0), rows, cols]
    return torch.where(c >= 0, vals, torch.zeros((), device=dev)).contiguous()


def plan_launches(weight: Tensor, stride: IntPair, padding: Pad4, out_size: IntPair,
                  config: Config, dtype: torch.dtype) -> list[Launch]:
    """Every launch of a call under ``config``: slots and packed weights (on weight's device)."""
    cin, c, kh, kw = weight.shape
    groups = tap_groups(c, (kh, kw), stride, padding, out_size)
    cin_pad = cin_padded(cin, config.block_k)
    return [Launch(s, pack_weights(weight, s, stride, config.block_n, cin_pad, dtype))
            for s in launch_slots(groups, config.merged, config.block_n, weight.device)]


def slot_count(channels: int, kernel: IntPair, stride: IntPair, padding: Pad4,
               out_size: IntPair) -> int:
    """Slots (channel phases with outputs) of a call."""
    return sum(len(g) for _, g in tap_groups(channels, kernel, stride, padding, out_size))


def mixed_taps(kernel: IntPair, stride: IntPair, padding: Pad4, out_size: IntPair) -> bool:
    """Whether phases reach different tap counts (then merged and split differ)."""
    return len(tap_groups(1, kernel, stride, padding, out_size)) > 1


def shuffle_phases(kernel: IntPair, stride: IntPair, padding: Pad4, out_size: IntPair
                   ) -> IntPair | None:
    """``(sh, sw)`` when a launch's slots can be stored as whole output rows, else None.

    That needs every channel's ``sh × sw`` phases (powers of two, at least two) in one launch
    with one tap window (a sub-pixel layer's), in the order :func:`tap_groups` gives them:
    channel, phase row, phase column. A block of ``block_n`` slots (a multiple of
    ``sh·sw``) then holds whole channels, and the kernel rearranges its tile
    ``(pixels, slots)`` into ``(channels, output rows, output columns)`` in registers, a
    pixel shuffle of the tile, so that stores run along output columns.
    """
    (sh, sw) = stride
    if sh * sw < 2 or sh & (sh - 1) or sw & (sw - 1):
        return None
    groups = tap_groups(1, kernel, stride, padding, out_size)
    if len(groups) != 1:
        return None
    phases = [(fh, fw) for _, fh, fw in groups[0][1]]
    return stride if phases == [(fh, fw) for fh in range(sh) for fw in range(sw)] else None
