"""Instrumented loop nests: the algorithms run element by element, counting as they go.

Each ``run_*`` computes its output with plain Python loops over NumPy arrays (float64) and
returns ``(output, Counts)``. The loop nests follow the reference algorithms in
:mod:`upconv.algorithms` pass by pass, and a :class:`Machine` counts every MAC and every
buffer access under the rules in :mod:`upconv.cost.counts`. Tests check the outputs against
PyTorch and the closed-form counts against these. Tiny shapes only: this is slow on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import numpy as np
import torch

from ..algorithms.tdc import phase_kernels
from ..shapes import Pad4, deconv_output_length, phase_outputs, tap_window
from .counts import Counts, Traffic, assemble, check_dtype

Index = tuple[int, ...]


class Buffer:
    """A stored tensor whose reads and writes are counted (see :mod:`upconv.cost.counts`)."""

    def __init__(self, name: str, role: str, data: np.ndarray, structural: np.ndarray | None = None
                 ) -> None:
        self.name, self.role = name, role
        self.data = np.array(data, dtype=np.float64)
        self.structural = (np.zeros(self.data.shape, bool) if structural is None
                           else np.array(structural, bool))
        self.reads = self.writes = 0
        self.times_written = np.zeros(self.data.shape, np.int64)
        self._read: set[Index] = set()
        self._written: set[Index] = set()

    def begin_pass(self) -> None:
        self._read.clear()
        self._written.clear()

    def read(self, idx: Index) -> float:
        if idx in self._written:  # read-modify-write: counts every time
            self.reads += 1
        elif idx not in self._read:  # an operand: once per pass
            self.reads += 1
            self._read.add(idx)
        return float(self.data[idx])

    def write(self, idx: Index, value: float, structural: bool = False) -> None:
        self.writes += 1
        self._written.add(idx)
        self.times_written[idx] += 1
        self.data[idx] = value
        self.structural[idx] = structural


class Machine:
    """Counts MACs and keeps the buffers; tracks the peak bytes of live temporaries."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.element_bytes, self.accumulator_bytes = check_dtype(dtype)
        self.macs = self.zero_macs = 0
        self.buffers: list[Buffer] = []
        self._live_bytes = self.peak_bytes = 0

    def width(self, role: str) -> int:
        return self.accumulator_bytes if role == "partial_sum" else self.element_bytes

    def buffer(self, name: str, role: str, data: np.ndarray,
               structural: np.ndarray | None = None) -> Buffer:
        buf = Buffer(name, role, data, structural)
        self.buffers.append(buf)
        if role in ("transform", "partial_sum"):
            self._live_bytes += buf.data.size * self.width(role)
            self.peak_bytes = max(self.peak_bytes, self._live_bytes)
        return buf

    def free(self, buf: Buffer) -> None:
        self._live_bytes -= buf.data.size * self.width(buf.role)

    def begin_pass(self) -> None:
        for buf in self.buffers:
            buf.begin_pass()

    def mac(self, acc: float, a: float, b: float, structural: bool) -> float:
        self.macs += 1
        self.zero_macs += structural
        return acc + a * b

    def counts(self, op: str, algorithm: str | None, batch: int) -> Counts:
        traffic = []
        for buf in self.buffers:
            width = self.width(buf.role)
            if buf.role != "output":
                traffic.append(Traffic(buf.name, buf.role, buf.data.size, width, buf.reads,
                                       buf.writes))
                continue
            if not (buf.times_written >= 1).all():
                raise AssertionError(f"{op}/{algorithm}: some outputs were never written")
            size = buf.data.size
            traffic.append(Traffic(buf.name, "output", size, width, 0, size))
            traffic.append(Traffic(f"{buf.name} partial sums", "partial_sum", size,
                                   self.accumulator_bytes, buf.reads, buf.writes - size))
        return assemble(op, algorithm, batch, self.dtype, self.macs, self.zero_macs, traffic,
                        self.peak_bytes)


def _conv_pass(
    m: Machine, src: Buffer, dst: Buffer, weight: Buffer, weight_index: Callable[..., Index],
    kernel: tuple[int, int], pad: tuple[int, int], stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1), groups: int = 1,
) -> None:
    """Dense convolution ``dst[n, co] = Σ src[n, ci] ⋆ weight``; padding is virtual zeros."""
    m.begin_pass()
    n, cin, h, w = src.data.shape
    _, cout, oh, ow = dst.data.shape
    per_in, per_out = cin // groups, cout // groups
    for b, co, i, j in product(range(n), range(cout), range(oh), range(ow)):
        acc = 0.0
        for ci, ki, kj in product(range(per_in), range(kernel[0]), range(kernel[1])):
            c_src = (co // per_out) * per_in + ci
            y = i * stride[0] - pad[0] + ki * dilation[0]
            x = j * stride[1] - pad[1] + kj * dilation[1]
            widx = weight_index(co, ci, ki, kj)
            wv = weight.read(widx)
            if 0 <= y < h and 0 <= x < w:
                v = src.read((b, c_src, y, x))
                zero = bool(src.structural[b, c_src, y, x] or weight.structural[widx])
            else:
                v, zero = 0.0, True
            acc = m.mac(acc, v, wv, zero)
        dst.write((b, co, i, j), acc)


def _conv_out(length: int, kernel: int, before: int, after: int, stride: int = 1,
              dilation: int = 1) -> int:
    return (length + before + after - dilation * (kernel - 1) - 1) // stride + 1


def run_conv(x: np.ndarray, weight: np.ndarray, stride: tuple[int, int] = (1, 1),
             padding: Pad4 = (0, 0, 0, 0), dilation: tuple[int, int] = (1, 1), groups: int = 1,
             dtype: str = "float32") -> tuple[np.ndarray, Counts]:
    """Plain convolution: ``x (N, Cin, H, W)``, ``weight (Cout, Cin/groups, Kh, Kw)``."""
    m = Machine(dtype)
    n, _, h, w = x.shape
    cout, _, kh, kw = weight.shape
    t, b, le, r = padding
    oh = _conv_out(h, kh, t, b, stride[0], dilation[0])
    ow = _conv_out(w, kw, le, r, stride[1], dilation[1])
    X, W = m.buffer("x", "input", x), m.buffer("weight", "weight", weight)
    Y = m.buffer("y", "output", np.zeros((n, cout, oh, ow)))
    _conv_pass(m, X, Y, W, lambda co, ci, i, j: (co, ci, i, j), (kh, kw), (t, le), stride,
               dilation, groups)
    return Y.data, m.counts("conv", None, n)


def run_sub_pixel_conv(x: np.ndarray, weight: np.ndarray, scale: tuple[int, int], padding: Pad4,
                       dtype: str = "float32") -> tuple[np.ndarray, Counts]:
    """C-SP: conv ``(C·rh·rw, Cin, Kh, Kw)`` into a stored map, then a pixel-shuffle pass."""
    m = Machine(dtype)
    n, _, h, w = x.shape
    crr, _, kh, kw = weight.shape
    rh, rw = scale
    c = crr // (rh * rw)
    X, W = m.buffer("x", "input", x), m.buffer("weight", "weight", weight)
    Z = m.buffer("conv output", "transform", np.zeros((n, crr, h, w)))
    _conv_pass(m, X, Z, W, lambda co, ci, i, j: (co, ci, i, j), (kh, kw),
               (padding[0], padding[2]))
    Y = m.buffer("y", "output", np.zeros((n, c, rh * h, rw * w)))
    m.begin_pass()
    for b, ch, i, j in product(range(n), range(c), range(rh * h), range(rw * w)):
        src = (b, ch * rh * rw + (i % rh) * rw + j % rw, i // rh, j // rw)
        Y.write((b, ch, i, j), Z.read(src))
    m.free(Z)
    return Y.data, m.counts("C-SP", None, n)


def run_resize_conv(x: np.ndarray, weight: np.ndarray, scale: tuple[int, int], padding: Pad4,
                    dtype: str = "float32") -> tuple[np.ndarray, Counts]:
    """C-NN: a nearest-resize pass into a stored map, then a same-padded conv."""
    m = Machine(dtype)
    n, cin, h, w = x.shape
    c, _, kh, kw = weight.shape
    rh, rw = scale
    X, W = m.buffer("x", "input", x), m.buffer("weight", "weight", weight)
    U = m.buffer("resized", "transform", np.zeros((n, cin, rh * h, rw * w)))
    m.begin_pass()
    for b, ch, i, j in product(range(n), range(cin), range(rh * h), range(rw * w)):
        U.write((b, ch, i, j), X.read((b, ch, i // rh, j // rw)))
    Y = m.buffer("y", "output", np.zeros((n, c, rh * h, rw * w)))
    _conv_pass(m, U, Y, W, lambda co, ci, i, j: (co, ci, i, j), (kh, kw),
               (padding[0], padding[2]))
    m.free(U)
    return Y.data, m.counts("C-NN", None, n)


def _out_size(h: int, w: int, stride: tuple[int, int], kernel: tuple[int, int], padding: Pad4,
              output_padding: tuple[int, int]) -> tuple[int, int]:
    t, b, le, r = padding
    return (deconv_output_length(h, stride[0], kernel[0], t, b, output_padding[0]),
            deconv_output_length(w, stride[1], kernel[1], le, r, output_padding[1]))


def _revd(m: Machine, X: Buffer, W: Buffer, Y: Buffer, stride: tuple[int, int], padding: Pad4,
          output_stationary: bool) -> None:
    n, cin, h, w = X.data.shape
    _, c, kh, kw = W.data.shape
    (sh, sw), (oh, ow) = stride, Y.data.shape[2:]
    top, left = padding[0], padding[2]
    if not output_stationary:  # REVD: zero the output, then one accumulation pass per tap
        m.begin_pass()
        for idx in product(range(n), range(c), range(oh), range(ow)):
            Y.write(idx, 0.0)
        m.begin_pass()
        for ki, kj in product(range(kh), range(kw)):
            o_h, q_h, n_h = phase_outputs(ki % sh, sh, top, oh)
            a, ja, na = tap_window(q_h, n_h, ki // sh, h)
            o_w, q_w, n_w = phase_outputs(kj % sw, sw, left, ow)
            bb, jb, nb = tap_window(q_w, n_w, kj // sw, w)
            for b, co, u, v in product(range(n), range(c), range(na), range(nb)):
                out = (b, co, o_h + sh * (a + u), o_w + sw * (bb + v))
                acc = Y.read(out)
                for ci in range(cin):
                    acc = m.mac(acc, X.read((b, ci, ja + u, jb + v)), W.read((ci, co, ki, kj)),
                                False)
                Y.write(out, acc)
        return
    m.begin_pass()  # REVD2: per phase, per output, one accumulator over the phase's taps
    for fh, fw in product(range(sh), range(sw)):
        o_h, q_h, n_h = phase_outputs(fh, sh, top, oh)
        o_w, q_w, n_w = phase_outputs(fw, sw, left, ow)
        for b, co, u, v in product(range(n), range(c), range(n_h), range(n_w)):
            acc = 0.0
            for ki in range(fh, kh, sh):
                a, ja, na = tap_window(q_h, n_h, ki // sh, h)
                if not a <= u < a + na:
                    continue
                for kj in range(fw, kw, sw):
                    bb, jb, nb = tap_window(q_w, n_w, kj // sw, w)
                    if not bb <= v < bb + nb:
                        continue
                    for ci in range(cin):
                        acc = m.mac(acc, X.read((b, ci, ja + u - a, jb + v - bb)),
                                    W.read((ci, co, ki, kj)), False)
            Y.write((b, co, o_h + sh * u, o_w + sw * v), acc)


def _stdd(m: Machine, X: Buffer, W: Buffer, Y: Buffer, stride: tuple[int, int],
          padding: Pad4) -> None:
    n, cin, h, w = X.data.shape
    _, c, kh, kw = W.data.shape
    sh, sw = stride
    m.begin_pass()  # the GEMM: every input pixel times the whole kernel
    cols = m.buffer("columns", "partial_sum", np.zeros((n, h, w, c, kh, kw)))
    for b, i, j, co, ki, kj in product(range(n), range(h), range(w), range(c), range(kh),
                                       range(kw)):
        acc = 0.0
        for ci in range(cin):
            acc = m.mac(acc, X.read((b, ci, i, j)), W.read((ci, co, ki, kj)), False)
        cols.write((b, i, j, co, ki, kj), acc)
    fh, fw = (h - 1) * sh + kh, (w - 1) * sw + kw
    full = m.buffer("full", "partial_sum", np.zeros((n, c, fh, fw)))
    m.begin_pass()
    for idx in product(range(n), range(c), range(fh), range(fw)):
        full.write(idx, 0.0)
    m.begin_pass()  # col2im: scatter each tap's plane (the overlapping sums)
    for ki, kj in product(range(kh), range(kw)):
        for b, i, j, co in product(range(n), range(h), range(w), range(c)):
            dst = (b, co, sh * i + ki, sw * j + kj)
            full.write(dst, full.read(dst) + cols.read((b, i, j, co, ki, kj)))
    m.free(cols)
    _crop_pass(m, full, Y, padding)


def _crop_pass(m: Machine, full: Buffer, Y: Buffer, padding: Pad4) -> None:
    """``y = full[top:top+O, left:left+O]``, zeros where the window leaves ``full``."""
    m.begin_pass()
    n, c, oh, ow = Y.data.shape
    fh, fw = full.data.shape[2:]
    for b, co, i, j in product(range(n), range(c), range(oh), range(ow)):
        y, x = i + padding[0], j + padding[2]
        Y.write((b, co, i, j), full.read((b, co, y, x)) if (0 <= y < fh and 0 <= x < fw)
                else 0.0)
    m.free(full)


def _strd(m: Machine, X: Buffer, W: Buffer, Y: Buffer, stride: tuple[int, int], padding: Pad4,
          output_padding: tuple[int, int]) -> None:
    n, cin, h, w = X.data.shape
    kh, kw = W.data.shape[2:]
    sh, sw = stride
    t, b_, le, r = padding
    lead_h, lead_w = kh - 1 - t, kw - 1 - le
    zh = (h - 1) * sh + 1 + lead_h + kh - 1 - b_ + output_padding[0]
    zw = (w - 1) * sw + 1 + lead_w + kw - 1 - r + output_padding[1]
    Z = m.buffer("zero-inserted", "transform", np.zeros((n, cin, zh, zw)))
    m.begin_pass()  # zero insertion and padding (negative padding crops)
    for b, ci, i, j in product(range(n), range(cin), range(zh), range(zw)):
        di, dj = i - lead_h, j - lead_w
        if di % sh == 0 and dj % sw == 0 and 0 <= di // sh < h and 0 <= dj // sw < w:
            Z.write((b, ci, i, j), X.read((b, ci, di // sh, dj // sw)))
        else:
            Z.write((b, ci, i, j), 0.0, structural=True)
    _conv_pass(m, Z, Y, W, lambda co, ci, i, j: (ci, co, kh - 1 - i, kw - 1 - j), (kh, kw),
               (0, 0))
    m.free(Z)


def _tdc(m: Machine, X: Buffer, weight: np.ndarray, Y: Buffer, stride: tuple[int, int],
         padding: Pad4) -> None:
    n, _, h, w = X.data.shape
    c = weight.shape[1]
    sh, sw = stride
    kernels = phase_kernels(torch.from_numpy(weight), stride).numpy()  # one-time transform
    taps = phase_kernels(torch.ones(weight.shape, dtype=torch.float64), stride).numpy()
    K = m.buffer("weight", "weight", kernels, structural=taps == 0)
    th, tw = kernels.shape[2:]
    gh, gw = h + th - 1, w + tw - 1
    P = m.buffer("phases", "transform", np.zeros((n, c * sh * sw, gh, gw)))
    _conv_pass(m, X, P, K, lambda co, ci, i, j: (co, ci, i, j), (th, tw), (th - 1, tw - 1))
    full = m.buffer("interleaved", "transform", np.zeros((n, c, sh * gh, sw * gw)))
    m.begin_pass()  # depth-to-space
    for b, co, i, j in product(range(n), range(c), range(sh * gh), range(sw * gw)):
        src = (b, co * sh * sw + (i % sh) * sw + j % sw, i // sh, j // sw)
        full.write((b, co, i, j), P.read(src))
    m.free(P)
    _crop_pass(m, full, Y, padding)


def run_deconv(x: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: Pad4,
               output_padding: tuple[int, int] = (0, 0), algorithm: str = "revd2",
               dtype: str = "float32", op: str = "deconv") -> tuple[np.ndarray, Counts]:
    """A deconvolution ``x (N, Cin, H, W)``, ``weight (Cin, C, Kh, Kw)`` run by ``algorithm``."""
    m = Machine(dtype)
    n, _, h, w = x.shape
    _, c, kh, kw = weight.shape
    oh, ow = _out_size(h, w, stride, (kh, kw), padding, output_padding)
    X = m.buffer("x", "input", x)
    if algorithm == "tdc":
        Y = m.buffer("y", "output", np.zeros((n, c, oh, ow)))
        _tdc(m, X, weight, Y, stride, padding)
        return Y.data, m.counts(op, algorithm, n)
    W = m.buffer("weight", "weight", weight)
    Y = m.buffer("y", "output", np.zeros((n, c, oh, ow)))
    if algorithm in ("revd", "revd2"):
        _revd(m, X, W, Y, stride, padding, output_stationary=algorithm == "revd2")
    elif algorithm == "stdd":
        _stdd(m, X, W, Y, stride, padding)
    elif algorithm == "strd":
        _strd(m, X, W, Y, stride, padding, output_padding)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return Y.data, m.counts(op, algorithm, n)
