"""The compiled REVD2 engine: output-stationary deconvolution on CPU (float32, numba + LLVM).

How one call runs (see ``docs/performance.md`` for the reasoning and measurements):

* The output phases ``(fh, fw)`` are grouped by how many taps reach them per axis
  (``ceil((Kd - f)/s)``, from :func:`upconv.shapes.taps_per_phase`), so no phase multiplies a
  structural zero. A group's *slots* are its ``(c, fh, fw)`` triples; the weight is packed
  once per group as ``(chunk, Cin, Th, Tw, nb)`` so that one input value meets ``nb`` slot
  weights that sit next to each other.
* Work is split over ``(batch, phase-grid row)`` with ``numba.prange``. For each row, the
  interior columns go through :func:`upconv.kernels._simd.strip_fma` (``nb`` slots × a strip
  of ``nv`` SIMD vectors, all accumulators in registers), input channels in blocks of
  :data:`IC_BLOCK`, partial sums kept in a per-thread row of phase accumulators
  (``nb × W`` floats per thread, allocated once per call); the few border columns whose taps
  leave the input use a scalar loop vectorised across slots.
* Each finished row is written once to its interleaved output positions, with the periodic
  or per-channel bias added on the way. The kernel makes no heap allocation, and nothing the
  size of a feature map exists besides the output.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import literally, prange
from torch import Tensor

from ..shapes import IntPair, Pad4, phase_outputs, taps_per_phase
from ._simd import LANES, MAX_ACCUMULATORS, strip_fma
from .weight_cache import derived

# numba's threading layer. Its OpenMP layer loads a second libgomp next to PyTorch's; whichever
# spin-waits holds a core, and on a small loaded machine each parallel call then waited for a
# scheduler tick: measured ~8 ms per call on 2 cores against ~0.5 ms with numba's own
# "workqueue" pool. That pool must not be entered by two Python threads at once, so calls into
# the kernel are serialised by a lock. An explicit NUMBA_THREADING_LAYER wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
_LAUNCH = threading.Lock()

#: At most this many SIMD vectors per strip (wider strips stop paying once rows are short).
MAX_STRIP_VECTORS = 4
#: Input channels per pass over a row's strips (see :func:`_revd2_group`); 4 to 32 measured
#: alike on the 2-core development machine, 8 keeps a block's input rows few.
IC_BLOCK = 8


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _store_strip(buf, off, width, y, n, chunk_slots, slot_c, slot_fh, slot_fw, bias, qh, q0,
                 nvalid, sh, sw, top, left):
    """Write ``buf[off + p·width + v]`` + bias to ``y[n, c, fh + sh·qh − top,
    fw + sw·(q0 + v) − left]``, the strip's interleaved output positions."""
    _, _, oh, ow = y.shape
    _, bh, bw = bias.shape
    for p in range(chunk_slots.shape[0]):
        g = chunk_slots[p]
        if g < 0:
            continue  # register-block padding
        c, fh, fw = slot_c[g], slot_fh[g], slot_fw[g]
        o_h = fh + sh * qh - top
        if o_h < 0 or o_h >= oh:
            continue
        # lanes whose column 0 <= fw + sw·(q0 + v) − left < ow
        v_lo = max(0, -((fw - left) // sw) - q0)
        v_hi = min(nvalid, (ow - 1 + left - fw) // sw - q0 + 1)
        if v_hi <= v_lo:
            continue
        o_w = fw + sw * (q0 + v_lo) - left
        b_row = o_h % bh
        b_col = o_w % bw
        b_step = sw % bw
        base = off + p * width
        for v in range(v_lo, v_hi):
            y[n, c, o_h, o_w] = buf[base + v] + bias[c, b_row, b_col]
            o_w += sw
            b_col += b_step
            if b_col >= bw:
                b_col -= bw


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _border_column(x, wpack, chunk, n, qh, q, th_lo, th_hi, th_n, tw_n, buf, width, v):
    """REVD2 of column ``q`` (taps may leave the input) into ``buf[p·width + v]``.

    The slot loop is innermost and contiguous in ``wpack``, so it vectorises across slots.
    """
    _, cin, _, w_in = x.shape
    nb = wpack.shape[4]
    for p in range(nb):
        buf[p * width + v] = 0.0
    for ic in range(cin):
        for th in range(th_lo, th_hi):
            for tw in range(max(0, q - w_in + 1), min(tw_n, q + 1)):  # 0 <= q - tw < W
                xv = x[n, ic, qh - th, q - tw]
                for p in range(nb):
                    buf[p * width + v] += xv * wpack[chunk, ic, th, tw, p]


@numba.njit(cache=True, parallel=True, fastmath=True, boundscheck=False)
def _revd2_group(x, wpack, slots, slot_c, slot_fh, slot_fw, bias, y, scratch, sh, sw, top,
                 left, qh_lo, qh_hi, qw_lo, qw_hi, ic_block, nb, nv, unit):
    """All outputs of one phase group. ``x (N, Cin, H, W)`` any strides, ``y`` C-contiguous.

    ``wpack (chunks, Cin, Th, Tw, nb)``; ``slots (chunks, nb)`` global slot ids (-1: padding);
    ``bias (C, bh, bw)``; ``scratch (threads, ≥ nb·strips·width)`` one phase-row accumulator
    per thread. ``nb``, ``nv`` and ``unit`` (x has unit column stride) are literals.
    """
    literally(nb)
    literally(nv)
    literally(unit)
    n_batch, cin, h_in, w_in = x.shape
    chunks, _, th_n, tw_n, _ = wpack.shape
    item = x.itemsize
    s_n, s_c, s_h, s_w = x.strides[0] // item, x.strides[1] // item, x.strides[2] // item, \
        x.strides[3] // item
    width = nv * LANES
    rows = qh_hi - qh_lo
    # interior columns: every tap q − tw lands inside [0, W)
    in_lo = max(qw_lo, tw_n - 1)
    in_hi = max(in_lo, min(qw_hi, w_in))
    w_block = th_n * tw_n * nb * cin
    strip = nb * width  # floats per strip in the row buffer
    for task in prange(n_batch * rows):
        n = task // rows
        qh = qh_lo + task % rows
        th_lo = max(0, qh - h_in + 1)
        th_hi = min(th_n, qh + 1)
        row = scratch[numba.get_thread_id()]
        for chunk in range(chunks):
            chunk_slots = slots[chunk]
            # channel blocks outermost: a block's Th·ic_block input rows stream through the
            # strips together, few enough for the hardware prefetchers to follow
            for ic0 in range(0, cin, ic_block):
                ic_n = min(ic_block, cin - ic0)
                for q0 in range(in_lo, in_hi, width):
                    strip_fma(x, n * s_n + ic0 * s_c + qh * s_h + q0 * s_w, s_c, s_h, s_w, ic_n,
                              wpack, chunk * w_block + ic0 * th_n * tw_n * nb, th_lo, th_hi, th_n,
                              tw_n, min(width, in_hi - q0), row, (q0 - in_lo) // width * strip,
                              ic0 > 0, nb, nv, unit)
            for q0 in range(in_lo, in_hi, width):
                _store_strip(row, (q0 - in_lo) // width * strip, width, y, n, chunk_slots,
                             slot_c, slot_fh, slot_fw, bias, qh, q0, min(width, in_hi - q0), sh,
                             sw, top, left)
            for q in range(qw_lo, qw_hi):
                if in_lo <= q < in_hi:
                    continue
                _border_column(x, wpack, chunk, n, qh, q, th_lo, th_hi, th_n, tw_n, row,
                               width, 0)
                _store_strip(row, 0, width, y, n, chunk_slots, slot_c, slot_fh, slot_fw, bias,
                             qh, q, 1, sh, sw, top, left)


@dataclass(frozen=True)
class PhaseGroup:
    """Phases sharing tap counts ``(Th, Tw)``, packed for the kernel.

    ``wpack (chunks, Cin, Th, Tw, nb)`` float32; ``slots (chunks, nb)`` int64 slot ids
    (-1 pads the last chunk); ``qh``/``qw`` the phase-grid ranges ``[lo, hi)`` to visit.
    """

    wpack: np.ndarray
    slots: np.ndarray
    qh: IntPair
    qw: IntPair
    nb: int
    nv: int


@dataclass(frozen=True)
class Plan:
    """Everything about a deconvolution that does not depend on the input values."""

    groups: tuple[PhaseGroup, ...]
    slot_c: np.ndarray
    slot_fh: np.ndarray
    slot_fw: np.ndarray


def _phases(length_in: int, kernel: int, stride: int, pad_before: int, out_len: int
            ) -> dict[int, list[tuple[int, int, int]]]:
    """Phases of one axis by tap count: ``{taps: [(phase, q_first, count), ...]}``."""
    by_taps: dict[int, list[tuple[int, int, int]]] = {}
    for f in range(stride):
        _, q_first, count = phase_outputs(f, stride, pad_before, out_len)
        if count == 0:
            continue
        taps = taps_per_phase(kernel - f, stride) if f < kernel else 0
        by_taps.setdefault(taps, []).append((f, q_first, count))
    return by_taps


#: Slot-block sizes compiled; a group's slots are split into chunks of one of these. A short
#: list keeps the number of compiled variants (and first-call compile time) small; it holds
#: the common ``C·s²`` products exactly (1, 4, 9, 12, 16, 24 ...), others pad the last chunk.
NB_CHOICES = (1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24)


def _block_shape(slots: int, interior: int) -> tuple[int, int]:
    """Register block ``(nb, nv)`` for ``slots`` phase outputs over ``interior`` columns.

    ``nb·nv`` accumulator vectors stay within :data:`MAX_ACCUMULATORS`; strips are one vector
    wide when a row has no more than one vector of interior columns.
    """
    cap = min(MAX_ACCUMULATORS, NB_CHOICES[-1])
    chunks = -(-slots // cap)
    need = -(-slots // chunks)
    nb = next(v for v in NB_CHOICES if v >= need)
    nv = max(1, min(MAX_STRIP_VECTORS, MAX_ACCUMULATORS // nb))
    return nb, (nv if interior > LANES else 1)


def make_plan(weight: Tensor, stride: IntPair, padding: Pad4, out_size: IntPair,
              in_size: IntPair) -> Plan:
    """Group phases, pack weights per group. ``weight (Cin, C, Kh, Kw)`` float32."""
    cin, c, kh, kw = weight.shape
    (sh, sw), (top, _, left, _) = stride, padding
    w_np = weight.detach().cpu().numpy()
    rows = _phases(in_size[0], kh, sh, top, out_size[0])
    cols = _phases(in_size[1], kw, sw, left, out_size[1])
    slot_c: list[int] = []
    slot_fh: list[int] = []
    slot_fw: list[int] = []
    groups = []
    for th_n, ph in rows.items():
        for tw_n, pw in cols.items():
            ids = []
            for fh, _, _ in ph:
                for fw, _, _ in pw:
                    for ch in range(c):
                        ids.append(len(slot_c))
                        slot_c.append(ch)
                        slot_fh.append(fh)
                        slot_fw.append(fw)
            qh = (min(q for _, q, _ in ph), max(q + k for _, q, k in ph))
            qw = (min(q for _, q, _ in pw), max(q + k for _, q, k in pw))
            nb, nv = _block_shape(len(ids), in_size[1] - tw_n + 1)
            chunks = -(-len(ids) // nb)
            slots = np.full((chunks, nb), -1, np.int64)
            slots.flat[: len(ids)] = ids
            wpack = np.zeros((chunks, cin, th_n, tw_n, nb), np.float32)
            for i, g in enumerate(ids):
                k_h = slot_fh[g] + sh * np.arange(th_n)
                k_w = slot_fw[g] + sw * np.arange(tw_n)
                wpack[i // nb, :, :, :, i % nb] = w_np[:, slot_c[g]][:, k_h][:, :, k_w]
            groups.append(PhaseGroup(wpack, slots, qh, qw, nb, nv))
    as_arr = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return Plan(tuple(groups), as_arr(slot_c), as_arr(slot_fh), as_arr(slot_fw))


def plan_for(weight: Tensor, stride: IntPair, padding: Pad4, out_size: IntPair,
             in_size: IntPair) -> Plan:
    """:func:`make_plan`, cached per weight tensor, its version and the geometry."""
    return derived(weight, ("revd2", stride, padding, out_size, in_size),
                   lambda: make_plan(weight, stride, padding, out_size, in_size))


def unsupported_reason(x: Tensor, weight: Tensor, bias: Tensor | None) -> str | None:
    """Why the compiled kernel cannot run this call (the reference runs it), or None."""
    tensors = [t for t in (x, weight, bias) if t is not None]
    if any(t.dtype != torch.float32 for t in tensors):
        return "dtype is not float32"
    if any(t.device.type != "cpu" for t in tensors):
        return "tensors are not on the CPU"
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "autograd needs gradients (the kernel is inference-only)"
    return None


def sync_threads() -> int:
    """Run numba's parallel loops on ``torch.get_num_threads()`` threads (at most numba's pool)."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    return threads


def deconv2d_revd2_compiled(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair,
) -> Tensor:
    """Compiled REVD2: ``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` → ``(N, C, *out_size)``.

    Same contract as the references in :mod:`upconv.algorithms`; float32 CPU tensors only
    (check :func:`unsupported_reason` first). NCHW and channels_last inputs are read in place.
    """
    n, _, h, w = x.shape
    c = weight.shape[1]
    plan = plan_for(weight, stride, padding, out_size, (h, w))
    y = torch.empty((n, c, *out_size), dtype=torch.float32)
    if bias is None:
        b = np.zeros((c, 1, 1), np.float32)
    else:  # per-channel bias as a period-(1, 1) periodic one
        period = (1, 1) if bias.ndim == 1 else tuple(bias.shape[1:])
        b = np.ascontiguousarray(bias.detach().reshape(c, *period).numpy())
    x_np = x.detach().numpy()
    y_np = y.numpy()
    sync_threads()
    (sh, sw), (top, _, left, _) = stride, padding
    unit = x_np.strides[3] == x_np.itemsize
    threads = numba.get_num_threads()
    for g in plan.groups:
        width = g.nv * LANES
        strips = max(1, -(-(w - g.wpack.shape[3] + 1) // width))
        scratch = np.empty((threads, g.nb * width * strips), np.float32)
        args = (x_np, g.wpack, g.slots, plan.slot_c, plan.slot_fh, plan.slot_fw, b, y_np,
                scratch, sh, sw, top, left, g.qh[0], g.qh[1], g.qw[0], g.qw[1], IC_BLOCK, g.nb,
                g.nv, unit)
        with _LAUNCH:
            _specialised(args)(*args)
    return y


_ENTRY_POINTS: dict[tuple, object] = {}


def _specialised(args: tuple) -> object:
    """The compiled ``_revd2_group`` for these argument types, with ``nb, nv, unit`` literal.

    Calling the dispatcher with literal arguments re-runs numba's literal dispatch on every
    call (tens of milliseconds); resolving the overload once and calling its entry point
    costs microseconds. Compiled overloads come from numba's on-disk cache when present.
    """
    *rest, nb, nv, unit = args
    sig = (*(numba.typeof(a) for a in rest), numba.types.literal(nb), numba.types.literal(nv),
           numba.types.literal(unit))
    entry = _ENTRY_POINTS.get(sig)
    if entry is None:
        _revd2_group.compile(sig)
        entry = _ENTRY_POINTS[sig] = _revd2_group.overloads[sig].entry_point
    return entry
