"""The compiled REVD2 engine: output-stationary deconvolution on CPU (float32, numba + LLVM).

How one call runs (see ``docs/performance.md`` for the reasoning and measurements):

* A *slot* is one output phase of one channel, ``(c, fh, fw)``; it reaches
  ``ceil((Kd - f)/s)`` taps per axis (:func:`upconv.shapes.taps_per_phase`). All slots are
  computed in one pass over the input, in chunks of ``nb`` slots whose weights are packed as
  ``(chunk, Cin, Th, Tw, nb)`` so that one input value meets ``nb`` slot weights that sit next
  to each other. When phases reach different tap counts (a resize convolution's do), every
  chunk repeats the same pattern of whole channels' phases and the micro-kernel skips, per
  slot, the taps it does not reach: no multiply by a structural zero, one input pass.
* Work is split over ``(batch, phase-grid row)`` tasks, run on PyTorch's own OpenMP team
  (:mod:`upconv.kernels.parallel`: no second thread pool competes with PyTorch's for the
  cores); threads take guided chunks of rows from an atomic counter. For each row, the
  interior columns go through :func:`upconv.kernels._simd.strip_fma` (``nb`` slots × a strip
  of ``nv`` SIMD vectors, all accumulators in registers), input channels in blocks of
  :data:`IC_BLOCK`, partial sums kept in a per-thread row of phase accumulators
  (``nb × W`` floats per thread). Columns whose taps leave the input run as one-vector
  *edge strips* whose lanes are masked per tap (zero padding without a copy); the interior
  runs as full strips without those masks.
* A call prepares its launch blocks (one int64 array per phase group describing the work)
  and the threads' buffers once per geometry and calling Python thread (:func:`_launches`);
  a repeated call only writes the input and output addresses, so small inputs pay tens of
  microseconds less Python per call and repeated calls no fresh buffers.
* channels_last inputs (strided columns) are staged a few rows at a time into a per-thread
  ring in NCHW order (:func:`_stage_rows`), so the micro-kernel always reads whole vectors.
  While a row computes, its strips prefetch the next row's input, a few cache lines per input
  channel, so staging that row reads cache, not memory. Staging from memory ran at ~0.55 ns
  per float against ~0.12 from cache, and was not overlapped with any arithmetic: on the
  2-core development machine, channels_last over NCHW went from 1.45-1.69× to 1.13-1.38× on
  L2's shape and from 1.21-1.38× to 1.10-1.19× on compiled ESPCN ×3's tail at 360×640.
* Chunks hold slots channel by channel, each channel's phases in output order, so a
  channel's column phases sit side by side. Where they form whole phase sets (column stride
  2 to 4, :func:`direct_sets`: every sub-pixel layer with those scales), the micro-kernel
  itself interleaves a set's vectors in registers, adds the bias and stores whole output runs
  at the end of the last block of input channels, so the stores of one strip overlap the
  arithmetic of the next. Before, every finished row went through the row buffer and a
  separate store pass, which stalled on the output's cache misses: on the 2-core development
  machine (same process, interleaved), direct stores made EDSR's ×2 upsampler (L5) 1.26×
  faster and the other paper layers 1.04-1.14×. Other layouts still write each finished row
  once to its interleaved output positions (:func:`_store_row`, contiguous runs where it
  can: :func:`_store_interleaved`), with the periodic or per-channel bias added on the way.
  The kernel makes no heap allocation, and nothing the size of a feature map exists besides
  the output.
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import literally, types
from torch import Tensor

from ..shapes import IntPair, Pad4, phase_outputs, taps_per_phase
from . import parallel
from ._simd import LANES, MAX_ACCUMULATORS, encode_taps, move_floats, strip_fma, transpose_tile
from .parallel import atomic_add, block_from, f32_ptr, i64_ptr
from .weight_cache import derived

#: numba's on-disk cache keys this module's compiled functions on a hash of this file alone,
#: but they inline code generated in ``_simd.py`` and ``parallel.py``: a stale cache would
#: keep running an old micro-kernel after those change. This digest of the two files (the
#: tests check it) makes every change there a change here, and so a fresh compilation.
KERNEL_SOURCES_SHA256 = "c6e0c964eb39a5e4a10dfc1f6ee9d8ec023d1d9e55f23c7b0dbe4fc44b3c879e"

#: At most this many SIMD vectors per strip (wider strips stop paying once rows are short).
MAX_STRIP_VECTORS = 4
#: Input channels per pass over a row's strips (see :func:`_revd2_group`). Since rows are
#: accumulated whole, 32 beat 8 by 3-8% on 11 of the 12 paper and held-out layers (2-core
#: development machine; fewer round trips of the accumulators through the row buffer).
IC_BLOCK = 32
#: Row tasks are taken in guided chunks: a ``GUIDE × threads``-th of what is left (at most an
#: eighth of a thread's share, at least one row). Fixed chunks of an eighth left one thread
#: up to a chunk (L5: 8 rows, ~3 ms) of work alone at the end.
GUIDE = 2


@numba.njit(cache=True)
def row_pitch(columns: int, nv: int) -> int:
    """Floats per slot in a row buffer of ``columns`` phase-grid columns, with room for the last
    strip's full-width vector stores."""
    return columns + nv * LANES


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _store_phase(buf, base, out, o_first, v_lo, v_hi, sw, bias, c, b_row, bw):
    """``out[o_first + sw·v] = buf[base + v]`` + bias for ``v_lo <= v < v_hi``: one slot's
    outputs of one row (``o_first``: the output column of ``v = 0``), the bias column
    stepping with the output column."""
    n = v_hi - v_lo
    if n <= 0:
        return
    o_w = o_first + sw * v_lo
    b_col = o_w % bw
    src = buf[base + v_lo : base + v_hi]
    dst = out[o_w : o_w + sw * (n - 1) + 1]
    b_step = sw % bw
    if b_step == 0:  # the bias is constant along a slot's row (per-channel, or D-SP's)
        b = bias[c, b_row, b_col]
        for v in range(n):
            dst[sw * v] = src[v] + b
        return
    for v in range(n):
        dst[sw * v] = src[v] + bias[c, b_row, b_col]
        b_col += b_step
        if b_col >= bw:
            b_col -= bw


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _phase_set(chunk_slots, p, slot_c, slot_fh, slot_fw, sw):
    """Whether chunk positions ``p … p + sw − 1`` hold slots ``(c, fh, 0 … sw − 1)`` of one
    channel and phase row, in order: together they fill whole output rows."""
    if sw < 2 or p + sw > chunk_slots.shape[0]:
        return False
    g = chunk_slots[p]
    if g < 0 or slot_fw[g] != 0:
        return False
    for k in range(1, sw):
        h = chunk_slots[p + k]
        if h < 0 or slot_c[h] != slot_c[g] or slot_fh[h] != slot_fh[g] or slot_fw[h] != k:
            return False
    return True


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _store_interleaved(buf, base, width, out, o_w, v_lo, v_hi, sw, b0, b1, b2, b3):
    """``out[o_w + sw·(v − v_lo) + k] = buf[base + k·width + v] + b_k`` for ``k < sw``,
    ``v_lo <= v < v_hi``: ``sw`` (2, 3 or 4) phase rows written as one contiguous output run
    (the stores of a row's neighbouring phases meet in one cache line). Slices, indexed by
    the loop counter, spare LLVM the negative-index checks of offset arithmetic."""
    n = v_hi - v_lo
    if n <= 0:
        return
    a = base + v_lo
    r0 = buf[a : a + n]
    r1 = buf[a + width : a + width + n]
    dst = out[o_w : o_w + sw * n]
    if sw == 2:
        for v in range(n):
            dst[2 * v] = r0[v] + b0
            dst[2 * v + 1] = r1[v] + b1
        return
    r2 = buf[a + 2 * width : a + 2 * width + n]
    if sw == 3:
        for v in range(n):
            dst[3 * v] = r0[v] + b0
            dst[3 * v + 1] = r1[v] + b1
            dst[3 * v + 2] = r2[v] + b2
        return
    r3 = buf[a + 3 * width : a + 3 * width + n]
    for v in range(n):
        dst[4 * v] = r0[v] + b0
        dst[4 * v + 1] = r1[v] + b1
        dst[4 * v + 2] = r2[v] + b2
        dst[4 * v + 3] = r3[v] + b3


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _store_row(buf, off, width, y, n, chunk_slots, slot_c, slot_fh, slot_fw, bias, qh, q0,
               nvalid, sh, sw, top, left):
    """Write ``buf[off + p·width + v]`` + bias to ``y[n, c, fh + sh·qh − top,
    fw + sw·(q0 + v) − left]`` for ``v < nvalid``: a phase row's interleaved output positions,
    once per slot and row.

    Where ``sw`` (2 to 4) consecutive positions hold all column phases of one channel's phase
    row (:func:`_phase_set`: channel-major chunks do) and the bias is constant along each,
    the columns every phase reaches are written as one contiguous run
    (:func:`_store_interleaved`); the rest, slot by slot with stride ``sw``."""
    _, _, oh, ow = y.shape
    _, bh, bw = bias.shape
    p = 0
    slots = chunk_slots.shape[0]
    while p < slots:
        g = chunk_slots[p]
        if g < 0:
            p += 1
            continue  # register-block padding
        c, fh = slot_c[g], slot_fh[g]
        o_h = fh + sh * qh - top
        if o_h < 0 or o_h >= oh:
            p += 1
            continue
        b_row = o_h % bh
        out = y[n, c, o_h]
        # a set: lanes [s_lo, s_hi) where every phase's column 0 <= k + sw·(q0 + v) − left < ow
        run, s_lo, s_hi = 1, 0, 0
        if sw <= 4 and sw % bw == 0 and _phase_set(chunk_slots, p, slot_c, slot_fh, slot_fw,
                                                     sw):
            run = sw
            s_lo = max(0, -(-left // sw) - q0)
            s_hi = max(s_lo, min(nvalid, (ow - sw + left) // sw - q0 + 1))
            _store_interleaved(buf, off + p * width, width, out, sw * (q0 + s_lo) - left, s_lo,
                               s_hi, sw, bias[c, b_row, -left % bw],
                               bias[c, b_row, (1 - left) % bw], bias[c, b_row, (2 - left) % bw],
                               bias[c, b_row, (3 - left) % bw])
        for k in range(run):
            fw = slot_fw[chunk_slots[p + k]]
            o_first = fw + sw * q0 - left  # output column of lane 0
            # lanes whose column 0 <= o_first + sw·v < ow, less the set's [s_lo, s_hi)
            v_lo = max(0, -((fw - left) // sw) - q0)
            v_hi = min(nvalid, (ow - 1 + left - fw) // sw - q0 + 1)
            base = off + (p + k) * width
            _store_phase(buf, base, out, o_first, v_lo, min(v_hi, s_lo) if s_hi > s_lo else v_hi,
                         sw, bias, c, b_row, bw)
            if s_hi > s_lo:
                _store_phase(buf, base, out, o_first, max(v_lo, s_hi), v_hi, sw, bias, c, b_row,
                             bw)
        p += run


@numba.njit(cache=True)
def staged_pitch(columns: int) -> int:
    """Floats per channel line of a staged row: ``columns`` rounded up to whole vectors."""
    return -(-columns // LANES) * LANES


def _aligned_empty(shape: tuple[int, int]) -> np.ndarray:
    """An uninitialised float32 array whose rows start on 64-byte boundaries (row lengths
    are whole vectors)."""
    n = shape[0] * shape[1]
    raw = np.empty(n + 16, np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip : skip + n].reshape(shape)


#: Rows a thread's staging ring holds per tap row of the window (see :func:`_stage_rows`).
RING_ROWS_PER_TAP = 2


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _stage_rows(x, s_n, s_c, s_h, s_w, cin, h_in, w_in, n, qh, depth, ring, state):
    """Copy the input rows row ``qh`` reads (``qh − depth < i ≤ qh``) into ``ring``, NCHW-like;
    return the offset in ``ring`` where row ``qh`` sits (rows ``qh − 1, qh − 2, …`` one row
    stride below it, as :func:`strip_fma` reads them).

    For inputs whose columns are not contiguous (channels_last): ``x`` is the input's memory,
    element ``(n, ic, i, col)`` at ``n·s_n + ic·s_c + i·s_h + col·s_w``. ``ring`` is one
    thread's ``R = RING_ROWS_PER_TAP·depth`` row slots of ``Cin × P`` floats,
    ``P = staged_pitch(W)`` (whole vectors per channel line, so tile stores are aligned).
    Row ``i`` sits in slot ``i − base``, written once; when the next row would not fit, the
    rows still needed (at most ``depth − 1``) move to the front and ``base`` follows
    (``depth − 1`` row copies per ``R − depth + 1`` staged rows, instead of writing every row
    twice). ``state = (n, rows staged up to, base)``: a thread walking consecutive rows copies
    one new row per call. With contiguous channels (channels_last) the copy is a transpose of
    ``LANES × LANES`` tiles in registers (:func:`~upconv.kernels._simd.transpose_tile`);
    what the tiles leave (and other layouts) is copied element by element.
    """
    pitch = staged_pitch(w_in)
    block = cin * pitch
    if depth == 0:  # a group of phases no tap reaches reads no input
        return 0
    capacity = ring.size // block
    lo = max(0, qh - depth + 1)
    hi = min(qh + 1, h_in)
    if state[0] == n and state[2] <= lo <= state[1] <= hi:
        start, base = state[1], state[2]
    else:
        start, base = lo, lo
    if hi - base > capacity:  # the rows still needed, [lo, start), to the front
        move_floats(ring, 0, (lo - base) * block, (start - lo) * block)
        base = lo
    tiled = s_c == 1
    w_full = w_in - w_in % LANES if tiled else 0
    c_full = cin - cin % LANES if tiled else 0
    for i in range(start, hi):
        slot = (i - base) * block
        at_row = n * s_n + i * s_h
        for c0 in range(0, w_full, LANES):
            for ic0 in range(0, c_full, LANES):
                transpose_tile(x, at_row + c0 * s_w + ic0, s_w, ring, slot + ic0 * pitch + c0,
                               pitch, 0)
        for ic in range(cin):  # what the tiles leave: the last channels, the last columns
            at = at_row + ic * s_c
            dst = slot + ic * pitch
            for col in range(0 if ic >= c_full else w_full, w_in):
                ring[dst + col] = x[at + col * s_w]
    state[0] = n
    state[1] = hi
    state[2] = base
    return (qh - base) * block


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _chunk_row(src, x_row, sx_ic, sx_row, w_in, wpack, chunk, ic_block, th_lo, th_hi, qw_lo,
               qw_hi, row, pitch, nb, nv, taps, direct, y, y_at, sw, left, oh_base, oh, ow, sets,
               pbias, ahead, ahead_at, ahead_col):
    """One phase-grid row of one chunk of slots into ``row`` (``nb`` slots × columns
    ``[qw_lo, qw_hi)``, slot stride ``pitch``), summed over all input channels.

    ``src.flat[x_row + ic·sx_ic − th·sx_row + col]`` is input channel ``ic``, column ``col``
    of the row tap ``th`` reads (``x`` in place, or a thread's staged rows). Full strips of
    ``nv`` vectors cover the interior; one-vector strips cover the left edge and what the
    full strips leave at the right end, masking per tap the lanes whose input column
    ``q − tw`` leaves ``[0, w_in)`` (zero padding without a copy). One call site each keeps
    the compiled variant small. ``nb``, ``nv`` and ``taps`` are literals.

    With ``direct`` (a literal: the column stride, or 0), the last channel block writes the
    sums straight into ``y`` (the output's memory, 1-D; ``y_at`` the offset of this image) with
    ``pbias`` added, phase sets ``sets (chunks, nb / direct, 2)`` as in
    :func:`~upconv.kernels._simd.strip_fma`, and ``row`` holds only partial sums.

    ``ahead`` (the input's memory; None for inputs read in place, which then compile no
    prefetch code) and ``ahead_at >= 0``: the strips of the first channel block prefetch,
    spread over their arithmetic, their columns of the row staged next
    (``ahead.flat[ahead_at + col·ahead_col …]``, channels contiguous), so that staging it
    reads cache (:func:`_rows_staged`).
    """
    literally(nb)
    literally(nv)
    literally(taps)
    literally(direct)
    _, cin, th_n, tw_n, _ = wpack.shape
    sets_at = chunk * sets.shape[1] * 2
    pbias_at = chunk * nb
    width = nv * LANES
    left_end = qw_lo if qw_lo >= tw_n - 1 else min(qw_hi, qw_lo + -(-(tw_n - 1 - qw_lo)
                                                                     // LANES) * LANES)
    full_end = left_end + max(0, (min(qw_hi, w_in) - left_end) // width) * width
    n_left = -(-(left_end - qw_lo) // LANES)
    n_narrow = n_left + -(-(qw_hi - full_end) // LANES)
    # channel blocks outermost: a block's Th·ic_block input rows stream through the strips
    # together, few enough for the hardware prefetchers to follow
    for ic0 in range(0, cin, ic_block):
        ic_n = min(ic_block, cin - ic0)
        w_off = (chunk * cin + ic0) * th_n * tw_n * nb
        at = x_row + ic0 * sx_ic
        carry = ic0 > 0
        final = ic0 + ic_n >= cin
        for q0 in range(left_end, full_end, width):
            pf = ahead_at + q0 * ahead_col if ahead_at >= 0 and ic0 == 0 else -1
            strip_fma(src, at + q0, sx_ic, sx_row, ic_n, wpack, w_off, th_lo, th_hi, th_n, tw_n,
                      width, row, q0 - qw_lo, pitch, carry, q0, w_in, nb, nv, False, taps,
                      direct, final, y, y_at, sw * q0 - left, oh_base, oh, ow, sets, sets_at,
                      pbias, pbias_at, ahead, pf, pf + (min(q0 + width, w_in) - q0) * ahead_col)
        for k in range(n_narrow):
            q0 = qw_lo + k * LANES if k < n_left else full_end + (k - n_left) * LANES
            nvalid = min(LANES, (left_end if k < n_left else qw_hi) - q0)
            pf = ahead_at + q0 * ahead_col if ahead_at >= 0 and ic0 == 0 else -1
            strip_fma(src, at + q0, sx_ic, sx_row, ic_n, wpack, w_off, th_lo, th_hi, th_n, tw_n,
                      nvalid, row, q0 - qw_lo, pitch, carry, q0, w_in, nb, 1, True, taps,
                      direct, final, y, y_at, sw * q0 - left, oh_base, oh, ow, sets, sets_at,
                      pbias, pbias_at, ahead, pf, pf + (min(q0 + nvalid, w_in) - q0) * ahead_col)


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _rows(x, s_n, s_c, s_h, h_in, w_in, wpack, slots, slot_c, slot_fh, slot_fw, bias, y, row, sh,
          sw, top, left, qh_lo, qh_hi, qw_lo, qw_hi, ic_block, task_lo, task_hi, nb, nv, taps,
          direct, sets, pbias):
    """Row tasks ``[task_lo, task_hi)`` (task = ``n·rows + qh − qh_lo``) of one phase group,
    reading the input in place: ``x`` its memory, element ``(n, ic, i, col)`` at
    ``n·s_n + ic·s_c + i·s_h + col`` (unit column stride); ``y`` C-contiguous.

    ``wpack (chunks, Cin, Th, Tw, nb)``; ``slots (chunks, nb)`` global slot ids (-1: padding);
    ``bias (C, bh, bw)``; ``row`` this thread's phase-row accumulator (``≥ nb·row_pitch``),
    written once per row and slot into the output. ``nb``, ``nv``, ``taps``
    (:func:`upconv.kernels._simd.encode_taps`) and ``direct`` are literals; with ``direct``, the
    micro-kernel stores the output itself (:func:`_chunk_row`) and ``row`` holds partial sums.
    """
    literally(nb)
    literally(nv)
    literally(taps)
    literally(direct)
    th_n = wpack.shape[2]
    rows = qh_hi - qh_lo
    pitch = row_pitch(qw_hi - qw_lo, nv)  # floats per slot in the row buffer
    _, c, oh, ow = y.shape
    flat = y.reshape(y.size)
    for task in range(task_lo, task_hi):
        n = task // rows
        qh = qh_lo + task % rows
        for chunk in range(slots.shape[0]):
            _chunk_row(x, n * s_n + qh * s_h, s_c, s_h, w_in, wpack, chunk, ic_block,
                       max(0, qh - h_in + 1), min(th_n, qh + 1), qw_lo, qw_hi, row, pitch, nb,
                       nv, taps, direct, flat, n * c * oh * ow, sw, left, sh * qh - top, oh, ow,
                       sets, pbias, None, -1, 0)
            if not direct:
                _store_row(row, 0, pitch, y, n, slots[chunk], slot_c, slot_fh, slot_fw, bias,
                           qh, qw_lo, qw_hi - qw_lo, sh, sw, top, left)


@numba.njit(cache=True, fastmath=True, boundscheck=False)
def _rows_staged(x, s_n, s_c, s_h, s_w, cin, h_in, w_in, wpack, slots, slot_c, slot_fh, slot_fw,
                 bias, y, row, ring, ring_state, sh, sw, top, left, qh_lo, qh_hi, qw_lo, qw_hi,
                 ic_block, task_lo, task_hi, nb, nv, taps, direct, sets, pbias):
    """:func:`_rows` for inputs whose columns are strided (channels_last): the thread first
    copies the rows a task reads into its ``ring (RING_ROWS_PER_TAP·Th·Cin·staged_pitch(W))``
    (:func:`_stage_rows`; ``ring_state (3,)`` starts at -1). A separate entry point, so that
    NCHW calls do not compile the staging."""
    literally(nb)
    literally(nv)
    literally(taps)
    literally(direct)
    th_n = wpack.shape[2]
    rows = qh_hi - qh_lo
    pitch = row_pitch(qw_hi - qw_lo, nv)
    line = staged_pitch(w_in)  # floats per channel line of a staged row
    _, c, oh, ow = y.shape
    flat = y.reshape(y.size)
    for task in range(task_lo, task_hi):
        n = task // rows
        qh = qh_lo + task % rows
        staged = _stage_rows(x, s_n, s_c, s_h, s_w, cin, h_in, w_in, n, qh, th_n, ring,
                             ring_state)
        # the row the next task stages (a thread takes consecutive rows), while this one
        # computes: channels_last only (contiguous channels)
        ahead_at = n * s_n + (qh + 1) * s_h if s_c == 1 and qh + 1 < h_in else -1
        for chunk in range(slots.shape[0]):
            _chunk_row(ring, staged, line, cin * line, w_in, wpack,
                       chunk, ic_block, max(0, qh - h_in + 1), min(th_n, qh + 1), qw_lo, qw_hi,
                       row, pitch, nb, nv, taps, direct, flat, n * c * oh * ow, sw, left,
                       sh * qh - top, oh, ow, sets, pbias, x,
                       ahead_at if chunk == 0 else -1, s_w)
            if not direct:
                _store_row(row, 0, pitch, y, n, slots[chunk], slot_c, slot_fh, slot_fw, bias,
                           qh, qw_lo, qw_hi - qw_lo, sh, sw, top, left)


# --- the parallel launch: one int64 block describes a group's work to every thread --------
# Counters (updated atomically by the threads), then addresses and sizes (set by _block;
# B_X and B_Y per call).
(B_THREAD, B_NEXT, B_THREADS, B_TASKS, B_CHUNK, B_X, B_X_LEN, B_SN, B_SC, B_SH, B_SW, B_N, B_CIN,
 B_H, B_W, B_WPACK, B_CHUNKS, B_TH, B_TW, B_NB, B_SLOTS, B_SLOT_C, B_SLOT_FH, B_SLOT_FW,
 B_NSLOTS, B_BIAS, B_C, B_BH, B_BW, B_Y, B_OH, B_OW, B_SCRATCH, B_SCRATCH_LEN, B_RING,
 B_RING_LEN, B_RING_STATE, B_STRIDE_H, B_STRIDE_W, B_TOP, B_LEFT, B_QH_LO, B_QH_HI, B_QW_LO,
 B_QW_HI, B_IC_BLOCK, B_GUIDE, B_SETS, B_NSETS, B_PBIAS, BLOCK_LEN) = range(51)


@numba.njit(cache=True)
def _unpack(blk):
    """The arrays a block points to: ``x`` (1-D, the input's memory), ``wpack``, ``slots``,
    ``slot_c``, ``slot_fh``, ``slot_fw``, ``bias``, ``y``, ``sets``, ``pbias``."""
    x = numba.carray(f32_ptr(blk[B_X]), (blk[B_X_LEN],))
    wpack = numba.carray(f32_ptr(blk[B_WPACK]), (blk[B_CHUNKS], blk[B_CIN], blk[B_TH],
                                                 blk[B_TW], blk[B_NB]))
    slots = numba.carray(i64_ptr(blk[B_SLOTS]), (blk[B_CHUNKS], blk[B_NB]))
    slot_c = numba.carray(i64_ptr(blk[B_SLOT_C]), (blk[B_NSLOTS],))
    slot_fh = numba.carray(i64_ptr(blk[B_SLOT_FH]), (blk[B_NSLOTS],))
    slot_fw = numba.carray(i64_ptr(blk[B_SLOT_FW]), (blk[B_NSLOTS],))
    bias = numba.carray(f32_ptr(blk[B_BIAS]), (blk[B_C], blk[B_BH], blk[B_BW]))
    y = numba.carray(f32_ptr(blk[B_Y]), (blk[B_N], blk[B_C], blk[B_OH], blk[B_OW]))
    sets = numba.carray(i64_ptr(blk[B_SETS]), (blk[B_CHUNKS], blk[B_NSETS], 2))
    pbias = numba.carray(f32_ptr(blk[B_PBIAS]), (blk[B_CHUNKS], blk[B_NB]))
    return x, wpack, slots, slot_c, slot_fh, slot_fw, bias, y, sets, pbias


@numba.njit(cache=True)
def _thread_buffer(blk, thread, at, length):
    """Thread ``thread``'s ``length`` floats of the per-thread buffer whose address is
    ``blk[at]``."""
    return numba.carray(f32_ptr(blk[at] + 4 * thread * blk[length]), (blk[length],))


@numba.njit(cache=True)
def _grab(blk):
    """The next row tasks a thread takes: ``(first, count)`` from the shared counter, guided
    (a ``B_GUIDE``-th of what is left, at most ``B_CHUNK``, at least one), so that the last
    grabs are single rows and threads finish together. ``first >= tasks`` when none is left.
    The size comes from a possibly stale read; the range is the thread's own either way."""
    left = blk[B_TASKS] - atomic_add(blk, B_NEXT, 0)
    size = max(1, min(blk[B_CHUNK], left // blk[B_GUIDE]))
    return atomic_add(blk, B_NEXT, size), size


_BODY_OPTIONS = {"cache": True, "fastmath": True, "boundscheck": False}


@functools.cache
def _body(nb: int, nv: int, taps: str, staged: bool, direct: int) -> int:
    """Address of the compiled parallel body ``void body(int64 *block)`` of one kernel variant.

    Every thread of the team calls it with the same block: it takes a thread index and then
    chunks of row tasks from the block's atomic counters until none are left (any team size
    finishes the work). Compiled once per variant and cached on disk by numba (the closure's
    constants are part of the cache key).
    """
    if staged:
        @numba.cfunc(types.void(types.voidptr), **_BODY_OPTIONS)
        def body(data):
            blk = numba.carray(block_from(data), (BLOCK_LEN,))
            thread = atomic_add(blk, B_THREAD, 1)
            if thread >= blk[B_THREADS]:
                return
            x, wpack, slots, slot_c, slot_fh, slot_fw, bias, y, sets, pbias = _unpack(blk)
            row = _thread_buffer(blk, thread, B_SCRATCH, B_SCRATCH_LEN)
            ring = _thread_buffer(blk, thread, B_RING, B_RING_LEN)
            state = numba.carray(i64_ptr(blk[B_RING_STATE] + 32 * thread), (4,))
            state[0] = -1
            state[1] = -1
            state[2] = -1
            tasks = blk[B_TASKS]
            t0, size = _grab(blk)
            while t0 < tasks:
                _rows_staged(x, blk[B_SN], blk[B_SC], blk[B_SH], blk[B_SW], blk[B_CIN], blk[B_H],
                             blk[B_W], wpack, slots, slot_c, slot_fh, slot_fw, bias, y, row, ring,
                             state, blk[B_STRIDE_H], blk[B_STRIDE_W], blk[B_TOP], blk[B_LEFT],
                             blk[B_QH_LO], blk[B_QH_HI], blk[B_QW_LO], blk[B_QW_HI],
                             blk[B_IC_BLOCK], t0, min(tasks, t0 + size), nb, nv, taps, direct,
                             sets, pbias)
                t0, size = _grab(blk)
    else:
        @numba.cfunc(types.void(types.voidptr), **_BODY_OPTIONS)
        def body(data):
            blk = numba.carray(block_from(data), (BLOCK_LEN,))
            thread = atomic_add(blk, B_THREAD, 1)
            if thread >= blk[B_THREADS]:
                return
            x, wpack, slots, slot_c, slot_fh, slot_fw, bias, y, sets, pbias = _unpack(blk)
            row = _thread_buffer(blk, thread, B_SCRATCH, B_SCRATCH_LEN)
            tasks = blk[B_TASKS]
            t0, size = _grab(blk)
            while t0 < tasks:
                _rows(x, blk[B_SN], blk[B_SC], blk[B_SH], blk[B_H], blk[B_W], wpack, slots,
                      slot_c, slot_fh, slot_fw, bias, y, row, blk[B_STRIDE_H], blk[B_STRIDE_W],
                      blk[B_TOP], blk[B_LEFT], blk[B_QH_LO], blk[B_QH_HI], blk[B_QW_LO],
                      blk[B_QW_HI], blk[B_IC_BLOCK], t0, min(tasks, t0 + size), nb, nv, taps,
                      direct, sets, pbias)
                t0, size = _grab(blk)
    return body.address


@dataclass(frozen=True)
class PhaseGroup:
    """Phase outputs computed in one pass over the input, packed for the kernel.

    ``wpack (chunks, Cin, Th, Tw, nb)`` float32; ``slots (chunks, nb)`` int64 slot ids
    (-1 pads the last chunk); ``taps`` the :func:`~upconv.kernels._simd.encode_taps` code of
    each chunk position's tap counts (the same in every chunk; zero weights beyond them are
    never read); ``qh``/``qw`` the phase-grid ranges ``[lo, hi)`` to visit; ``direct`` the
    column stride when the micro-kernel can store the output itself (:func:`direct_sets`),
    else 0, and ``sets`` its phase sets.
    """

    wpack: np.ndarray
    slots: np.ndarray
    taps: str
    qh: IntPair
    qw: IntPair
    nb: int
    nv: int
    direct: int
    sets: np.ndarray


@dataclass(frozen=True)
class Plan:
    """Everything about a deconvolution that does not depend on the input values."""

    groups: tuple[PhaseGroup, ...]
    slot_c: np.ndarray
    slot_fh: np.ndarray
    slot_fw: np.ndarray


def _phases(kernel: int, stride: int, pad_before: int, out_len: int
            ) -> list[tuple[int, int, int, int]]:
    """Phases of one axis that have outputs: ``[(phase, q_first, count, taps), ...]``."""
    out = []
    for f in range(stride):
        _, q_first, count = phase_outputs(f, stride, pad_before, out_len)
        if count:
            out.append((f, q_first, count, taps_per_phase(kernel - f, stride) if f < kernel else 0))
    return out


#: Slot-block sizes compiled; a group's slots are split into chunks of one of these. A short
#: list keeps the number of compiled variants (and first-call compile time) small; it holds
#: the common ``C·s²`` products exactly (1, 4, 9, 12, 16, 24 ...), others pad the last chunk.
NB_CHOICES = (1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24)


def _strip_vectors(nb: int, interior: int) -> int:
    """Vectors per strip for ``nb`` slots (within :data:`MAX_ACCUMULATORS`; 1 for short rows)."""
    return max(1, min(MAX_STRIP_VECTORS, MAX_ACCUMULATORS // nb)) if interior > LANES else 1


def _block_shape(slots: int, interior: int) -> tuple[int, int]:
    """Register block ``(nb, nv)`` for ``slots`` phase outputs over ``interior`` columns.

    ``nb·nv`` accumulator vectors stay within :data:`MAX_ACCUMULATORS`; strips are one vector
    wide when a row has no more than one vector of interior columns.
    """
    cap = min(MAX_ACCUMULATORS, NB_CHOICES[-1])
    chunks = -(-slots // cap)
    need = -(-slots // chunks)
    nb = next(v for v in NB_CHOICES if v >= need)
    return nb, _strip_vectors(nb, interior)


def _chunk_layout(channels: int, phases: int) -> list[tuple[int, int]]:
    """How a group with per-channel tap patterns is cut: ``[(channels per chunk, phases)]``.

    Every chunk of one group must repeat the same tap pattern, so chunks hold whole channels
    (all ``phases`` of each), or, when one channel's phases exceed a register block, one channel
    and a piece of its phases (one group per piece).
    """
    cap = min(MAX_ACCUMULATORS, NB_CHOICES[-1])
    if phases > cap:
        pieces = -(-phases // cap)
        size = -(-phases // pieces)
        return [(1, min(size, phases - i)) for i in range(0, phases, size)]
    per = min(channels, cap // phases)
    chunks = -(-channels // per)
    return [(-(-channels // chunks), phases)]


#: Column strides whose phase sets the micro-kernel interleaves and stores itself.
DIRECT_STRIDES = (2, 3, 4)


def direct_sets(slots: np.ndarray, slot_c: np.ndarray, slot_fh: np.ndarray, slot_fw: np.ndarray,
                sw: int, plane: int) -> np.ndarray | None:
    """``(chunks, nb / sw, 2)`` int64 ``(c·plane, fh)`` per phase set, or None.

    A phase set is ``sw`` consecutive chunk positions holding one channel's phase row
    ``(c, fh)`` with column phases ``0 … sw − 1`` in order: together they make whole runs of
    output rows, which the micro-kernel interleaves in registers and stores
    (:func:`~upconv.kernels._simd.strip_fma`). A set of padding positions is ``(-1, 0)``.
    None when ``sw`` is not in :data:`DIRECT_STRIDES`, ``nb`` is not a multiple of it, or
    any position block is not a set.
    """
    chunks, nb = slots.shape
    if sw not in DIRECT_STRIDES or nb % sw:
        return None
    sets = np.zeros((chunks, nb // sw, 2), np.int64)
    for k in range(chunks):
        for j in range(nb // sw):
            ids = slots[k, j * sw : (j + 1) * sw]
            if (ids < 0).all():
                sets[k, j] = (-1, 0)
                continue
            if ((ids < 0).any() or len(set(slot_c[ids])) > 1 or len(set(slot_fh[ids])) > 1
                    or list(slot_fw[ids]) != list(range(sw))):
                return None
            sets[k, j] = (slot_c[ids[0]] * plane, slot_fh[ids[0]])
    return sets


def make_plan(weight: Tensor, stride: IntPair, padding: Pad4, out_size: IntPair,
              in_size: IntPair) -> Plan:
    """Group phases, pack weights per group. ``weight (Cin, C, Kh, Kw)`` float32.

    When every phase reaches the same taps, all slots form one group cut into chunks of
    :func:`_block_shape`. Otherwise (a resize convolution's phases reach 1 or 2 taps per axis)
    the phases still share one pass over the input: each chunk holds whole channels' phase
    patterns and the micro-kernel skips, per slot, the taps it does not reach.
    """
    cin, c, kh, kw = weight.shape
    (sh, sw), (top, _, left, _) = stride, padding
    w_np = weight.detach().cpu().numpy()
    rows = _phases(kh, sh, top, out_size[0])
    cols = _phases(kw, sw, left, out_size[1])
    # one channel's phases in output order (row phase, then column phase): a chunk's
    # neighbouring positions then hold the column phases that share output cache lines
    pattern = [(th, tw, fh, fw) for fh, _, _, th in rows for fw, _, _, tw in cols]
    slot_c = np.array([ch for _ in pattern for ch in range(c)], np.int64)
    slot_fh = np.array([fh for _, _, fh, _ in pattern for _ in range(c)], np.int64)
    slot_fw = np.array([fw for _, _, _, fw in pattern for _ in range(c)], np.int64)
    slot_of = {(ch, i): i * c + ch for i in range(len(pattern)) for ch in range(c)}
    uniform = len({(th, tw) for th, tw, _, _ in pattern}) == 1
    qh = (min(q for _, q, _, _ in rows), max(q + k for _, q, k, _ in rows))
    qw = (min(q for _, q, _, _ in cols), max(q + k for _, q, k, _ in cols))
    interior = in_size[1] - max(tw for _, tw, _, _ in pattern) + 1

    chunked: list[list[list[int]]] = []  # groups → chunks → slot ids (-1: padding)
    if uniform:  # channel-major slot order (whole output rows per chunk), chunks of any slots
        ids = [slot_of[ch, i] for ch in range(c) for i in range(len(pattern))]
        nb, _ = _block_shape(len(ids), interior)
        chunked.append([ids[i : i + nb] for i in range(0, len(ids), nb)])
    else:
        first = 0
        for per, phases in _chunk_layout(c, len(pattern)):
            piece = range(first, first + phases)
            chunked.append([[slot_of[ch, i] for ch in range(c0, min(c, c0 + per)) for i in piece]
                            for c0 in range(0, c, per)])
            first += phases
    groups = []
    for chunks in chunked:
        nb = _block_shape(len(slot_c), interior)[0] if uniform else len(chunks[0])
        slots = np.full((len(chunks), nb), -1, np.int64)
        for k, ch in enumerate(chunks):
            slots[k, : len(ch)] = ch
        # tap counts per chunk position, from the first (full) chunk
        pos_taps = [(pattern[g // c][0], pattern[g // c][1]) for g in slots[0] if g >= 0]
        pos_taps += [pos_taps[0]] * (nb - len(pos_taps))  # padding: any pattern (zero weights)
        th_n, tw_n = max(t for t, _ in pos_taps), max(t for _, t in pos_taps)
        wpack = np.zeros((len(chunks), cin, th_n, tw_n, nb), np.float32)
        for k in range(len(chunks)):
            for pos in range(nb):
                g = int(slots[k, pos])
                if g < 0:
                    continue
                t_h, t_w = pos_taps[pos]
                k_h = slot_fh[g] + sh * np.arange(t_h)
                k_w = slot_fw[g] + sw * np.arange(t_w)
                wpack[k, :, :t_h, :t_w, pos] = w_np[:, slot_c[g]][:, k_h][:, :, k_w]
        sets = direct_sets(slots, slot_c, slot_fh, slot_fw, sw, out_size[0] * out_size[1])
        if sets is None:  # no phase sets: the store pass (an empty array for the block)
            sets = np.zeros((len(chunks), 0, 2), np.int64)
        groups.append(PhaseGroup(wpack, slots, encode_taps(pos_taps), qh, qw, nb,
                                 _strip_vectors(nb, interior), sw if sets.shape[1] else 0, sets))
    return Plan(tuple(groups), slot_c, slot_fh, slot_fw)


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


def deconv2d_revd2_compiled(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: IntPair, padding: Pad4,
    output_padding: IntPair, out_size: IntPair, out: Tensor | None = None,
) -> Tensor:
    """Compiled REVD2: ``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` → ``(N, C, *out_size)``.

    Same contract as the references in :mod:`upconv.algorithms`; float32 CPU tensors only
    (check :func:`unsupported_reason` first). NCHW inputs are read in place; channels_last (any
    input whose columns are strided) is staged a few rows at a time per thread (no copy of the
    whole input). ``out``: a C-contiguous float32 ``(N, C, *out_size)`` tensor to write every
    output element into (returned); otherwise a new one is allocated. Runs on
    ``torch.get_num_threads()`` threads of PyTorch's own OpenMP team
    (:mod:`upconv.kernels.parallel`).
    """
    n, _, h, w = x.shape
    c = weight.shape[1]
    plan = plan_for(weight, stride, padding, out_size, (h, w))
    if out is not None and out.is_contiguous() and out.dtype == torch.float32:
        y = out
    else:
        y = torch.empty((n, c, *out_size), dtype=torch.float32)
    threads = torch.get_num_threads()
    for body, blk, address in _launches(plan, x, bias, c, stride, padding, out_size, threads):
        blk[B_THREAD] = blk[B_NEXT] = 0  # the counters the threads take work from
        blk[B_X] = x.data_ptr()
        blk[B_Y] = y.data_ptr()
        parallel.run(body, address, threads)
    if out is not None and y is not out:
        out.copy_(y)
        return out
    return y


deconv2d_revd2_compiled.takes_out = True  # type: ignore[attr-defined]


class _Launches:
    """One call geometry's launch blocks and the buffers they point to, prepared once and
    reused by the same Python thread's later calls (a call at a known geometry then only
    writes the input and output addresses). Holds the plan and the bias weakly: an entry
    whose plan or bias is gone, or is not the call's, is rebuilt."""

    def __init__(self, plan: Plan, bias: Tensor | None,
                 blocks: list[tuple[int, np.ndarray, int]], keep: list[np.ndarray]) -> None:
        self.plan = weakref.ref(plan)
        self.bias = None if bias is None else weakref.ref(bias)
        self.blocks = blocks
        self.keep = keep  # the arrays the blocks point to (bias copies, thread buffers)

    def serves(self, plan: Plan, bias: Tensor | None) -> bool:
        return self.plan() is plan and (bias is None if self.bias is None
                                        else self.bias() is bias)


#: Prepared launches kept per Python thread (each thread has its own buffers and counters,
#: so concurrent calls never share them); older geometries are dropped beyond this.
MAX_LAUNCHES = 8
_LOCAL = threading.local()


def _launches(plan: Plan, x: Tensor, bias: Tensor | None, c: int, stride: IntPair,
              padding: Pad4, out_size: IntPair, threads: int
              ) -> list[tuple[int, np.ndarray, int]]:
    """``(body address, block, block address)`` per phase group for this call, from this
    thread's cache."""
    cache = getattr(_LOCAL, "launches", None)
    if cache is None:
        cache = _LOCAL.launches = {}
    bias_key = None if bias is None else (id(bias), bias._version, bias.data_ptr())
    key = (id(plan), bias_key, tuple(x.shape), x.stride(), threads)
    entry = cache.get(key)
    if entry is None or not entry.serves(plan, bias):
        if len(cache) >= MAX_LAUNCHES:
            cache.clear()
        entry = cache[key] = _prepare(plan, x, bias, c, stride, padding, out_size, threads)
    return entry.blocks


def _prepare(plan: Plan, x: Tensor, bias: Tensor | None, c: int, stride: IntPair,
             padding: Pad4, out_size: IntPair, threads: int) -> _Launches:
    """Launch blocks for every phase group of ``plan`` at ``x``'s shape and strides, with
    ``threads`` threads' buffers; ``B_X``, ``B_Y`` and the counters are set per call."""
    if bias is None:
        b = np.zeros((c, 1, 1), np.float32)
    else:  # per-channel bias as a period-(1, 1) periodic one (a copy: kept with the blocks)
        period = (1, 1) if bias.ndim == 1 else tuple(bias.shape[1:])
        b = np.array(bias.detach().reshape(c, *period).numpy(), np.float32)
    staged = x.stride(3) != 1  # strided columns (channels_last)
    blocks, keep = [], [b]
    for g in plan.groups:
        direct, pbias = _direct_bias(g, plan, b, stride, padding)
        blk, buffers = _block(g, plan, x, b, pbias, out_size, stride, padding, threads, staged)
        blocks.append((_body(g.nb, g.nv, g.taps, staged, direct), blk, blk.ctypes.data))
        keep += [pbias, *buffers]
    return _Launches(plan, bias, blocks, keep)


def _block(g: PhaseGroup, plan: Plan, x: Tensor, b: np.ndarray, pbias: np.ndarray,
           out_size: IntPair, stride: IntPair, padding: Pad4, threads: int, staged: bool
           ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group ``g``'s launch block and the per-thread buffers it points to (row accumulators,
    staging ring and its state)."""
    n, cin, h, w = x.shape
    (qw_lo, qw_hi), depth = g.qw, g.wpack.shape[2]
    tasks = n * (g.qh[1] - g.qh[0])
    scratch_len = g.nb * row_pitch(qw_hi - qw_lo, g.nv)
    scratch = np.empty((threads, scratch_len), np.float32)
    ring_len = RING_ROWS_PER_TAP * depth * cin * staged_pitch(w) if staged else 0
    ring = _aligned_empty((threads, ring_len))
    ring_state = np.empty((threads, 4), np.int64)
    x_len = 1 + sum((size - 1) * step for size, step in zip(x.shape, x.stride(), strict=True))
    (sh, sw), (top, _, left, _) = stride, padding
    blk = np.zeros(BLOCK_LEN, np.int64)
    for slot, value in (
        (B_THREADS, threads), (B_TASKS, tasks), (B_CHUNK, max(1, tasks // (8 * threads))),
        (B_GUIDE, GUIDE * threads), (B_X_LEN, x_len), (B_SN, x.stride(0)), (B_SC, x.stride(1)),
        (B_SH, x.stride(2)), (B_SW, x.stride(3)), (B_N, n), (B_CIN, cin), (B_H, h), (B_W, w),
        (B_WPACK, g.wpack.ctypes.data), (B_CHUNKS, g.wpack.shape[0]), (B_TH, depth),
        (B_TW, g.wpack.shape[3]), (B_NB, g.nb), (B_SLOTS, g.slots.ctypes.data),
        (B_SLOT_C, plan.slot_c.ctypes.data), (B_SLOT_FH, plan.slot_fh.ctypes.data),
        (B_SLOT_FW, plan.slot_fw.ctypes.data), (B_NSLOTS, plan.slot_c.shape[0]),
        (B_BIAS, b.ctypes.data), (B_C, b.shape[0]), (B_BH, b.shape[1]), (B_BW, b.shape[2]),
        (B_OH, out_size[0]), (B_OW, out_size[1]),
        (B_SCRATCH, scratch.ctypes.data), (B_SCRATCH_LEN, scratch_len),
        (B_RING, ring.ctypes.data), (B_RING_LEN, ring_len),
        (B_RING_STATE, ring_state.ctypes.data), (B_STRIDE_H, sh), (B_STRIDE_W, sw),
        (B_TOP, top), (B_LEFT, left), (B_QH_LO, g.qh[0]), (B_QH_HI, g.qh[1]),
        (B_QW_LO, qw_lo), (B_QW_HI, qw_hi), (B_IC_BLOCK, IC_BLOCK),
        (B_SETS, g.sets.ctypes.data), (B_NSETS, g.sets.shape[1]), (B_PBIAS, pbias.ctypes.data),
    ):
        blk[slot] = value
    return blk, [scratch, ring, ring_state]


def _direct_bias(g: PhaseGroup, plan: Plan, b: np.ndarray, stride: IntPair, padding: Pad4
                 ) -> tuple[int, np.ndarray]:
    """``(direct, pbias (chunks, nb))``: whether the micro-kernel stores group ``g``'s output
    itself (its column stride, or 0), and each chunk position's bias. Direct stores need one
    bias value per slot: a periodic bias ``(C, bh, bw)`` whose period divides the stride."""
    (sh, sw), (top, _, left, _) = stride, padding
    _, bh, bw = b.shape
    if not g.direct or sh % bh or sw % bw:
        return 0, np.zeros(g.slots.shape, np.float32)
    ids = np.maximum(g.slots, 0)
    values = b[plan.slot_c[ids], (plan.slot_fh[ids] - top) % bh, (plan.slot_fw[ids] - left) % bw]
    return g.direct, np.ascontiguousarray(np.where(g.slots >= 0, values, 0), np.float32)
