"""Exact work and traffic counts of the upsampling operators, in closed form.

What is counted (a *pass* is one loop nest of the algorithm, e.g. "the convolution" or "the
pixel shuffle"):

* ``macs``: every multiply-accumulate the loop nest executes; ``zero_macs`` of them multiply a
  structural zero (zero padding, STRD's inserted zeros, TDC's padded phase taps).
* Reads: within one pass every distinct element of an operand counts once (reuse inside a
  pass stays on chip, the authors' assumption); a read of an element the same pass already
  wrote (a read-modify-write of a partial sum) counts every time.
* Writes: every write counts. The layer output's one final write per element is activation
  traffic; its other writes and its reads (REVD's per-tap accumulation) are partial sums.

Buffers (:class:`Traffic`) carry a role: ``input`` and ``output`` (activation traffic A),
``weight`` (W), ``transform`` (P: shuffle, resize, zero insertion, TDC's interleave) and
``partial_sum`` (STDD's columns and overlapping sums, REVD's accumulation). Partial sums are
held at accumulator width (``int8`` accumulates in 32 bits, ``float16`` in 32 bits).

Every formula here is checked against instrumented loop nests in :mod:`upconv.cost.instrument`,
which count the same events while computing the right output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ..algorithms import ALGORITHMS
from ..shapes import (
    DeconvGeometry,
    PaddingLike,
    conv_same_padding4,
    deconv_output_length,
    padding4,
    pair,
    phase_outputs,
    resize_deconv_geometry,
    scale_pair,
    subpixel_deconv_geometry,
    tap_window,
    taps_per_phase,
)

#: element bytes and accumulator bytes of each supported data type
DTYPES: dict[str, tuple[int, int]] = {"float32": (4, 4), "float16": (2, 4), "int8": (1, 4)}
#: operators accepted by :func:`count`
OPS: tuple[str, ...] = ("C-SP", "C-NN", "D-SP", "D-NN")


@dataclass(frozen=True)
class Traffic:
    """Accesses to one buffer: ``elements`` in it, each ``element_bytes`` wide."""

    name: str
    role: str
    elements: int
    element_bytes: int
    reads: int
    writes: int

    @property
    def nbytes(self) -> int:
        """Size of the buffer in bytes."""
        return self.elements * self.element_bytes

    @property
    def accesses(self) -> int:
        return self.reads + self.writes


@dataclass(frozen=True)
class Counts:
    """Work and traffic of one layer call on ``batch`` images (element counts unless *_bytes).

    ``weight_reads`` are per call (the batch shares the weights); everything else grows with
    the batch. ``temporary_bytes`` is the peak size of the buffers the algorithm allocates
    besides its input, output and weights.
    """

    op: str
    algorithm: str | None
    batch: int
    dtype: str
    macs: int
    zero_macs: int
    weight_reads: int
    activation_traffic: int
    transform_traffic: int
    partial_sum_traffic: int
    temporary_bytes: int
    traffic: tuple[Traffic, ...] = field(default=(), repr=False)

    @property
    def useful_macs(self) -> int:
        return self.macs - self.zero_macs

    @property
    def label(self) -> str:
        return self.op if self.algorithm is None else f"{self.op}/{self.algorithm}"

    def per_image(self) -> Counts:
        """The counts of one image of the batch (weights are still read once)."""
        n = self.batch

        def one(value: int) -> int:
            if value % n:
                raise ValueError(f"{value} is not a multiple of the batch {n}")
            return value // n

        traffic = tuple(replace(t, elements=t.elements if t.role == "weight" else one(t.elements),
                                reads=t.reads if t.role == "weight" else one(t.reads),
                                writes=one(t.writes)) for t in self.traffic)
        return replace(self, batch=1, macs=one(self.macs), zero_macs=one(self.zero_macs),
                       activation_traffic=one(self.activation_traffic),
                       transform_traffic=one(self.transform_traffic),
                       partial_sum_traffic=one(self.partial_sum_traffic),
                       temporary_bytes=one(self.temporary_bytes), traffic=traffic)

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready fields (traffic as a list of dicts)."""
        out = {k: getattr(self, k) for k in (
            "op", "algorithm", "batch", "dtype", "macs", "zero_macs", "weight_reads",
            "activation_traffic", "transform_traffic", "partial_sum_traffic",
            "temporary_bytes")}
        out["traffic"] = [t.__dict__.copy() for t in self.traffic]
        return out


def check_dtype(dtype: str) -> tuple[int, int]:
    """``(element bytes, accumulator bytes)`` of ``dtype``, or a ValueError listing the options."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}; got {dtype!r}")
    return DTYPES[dtype]


def assemble(
    op: str, algorithm: str | None, batch: int, dtype: str, macs: int, zero_macs: int,
    traffic: Iterable[Traffic], temporary_bytes: int,
) -> Counts:
    """Sum buffer traffic into the headline fields (shared by formulas and instrumentation)."""
    traffic = tuple(sorted((t for t in traffic if t.accesses or t.role != "partial_sum"),
                           key=lambda t: t.name))

    def total(role: str, reads: bool = True, writes: bool = True) -> int:
        return sum(t.reads * reads + t.writes * writes for t in traffic if t.role == role)

    return Counts(
        op=op, algorithm=algorithm, batch=batch, dtype=dtype, macs=macs, zero_macs=zero_macs,
        weight_reads=total("weight", writes=False),
        activation_traffic=total("input", writes=False) + total("output", reads=False),
        transform_traffic=total("transform"),
        partial_sum_traffic=total("partial_sum"),
        temporary_bytes=temporary_bytes,
        traffic=traffic,
    )


def combine(counts: Sequence[Counts], op: str = "model", algorithm: str | None = None) -> Counts:
    """Layers run one after another: counts add, the temporary peak is the largest one."""
    if not counts:
        raise ValueError("combine needs at least one Counts")
    first = counts[0]
    summed = {k: sum(getattr(c, k) for c in counts) for k in (
        "macs", "zero_macs", "weight_reads", "activation_traffic", "transform_traffic",
        "partial_sum_traffic")}
    return replace(first, op=op, algorithm=algorithm, traffic=(),
                   temporary_bytes=max(c.temporary_bytes for c in counts), **summed)


# --- per-axis arithmetic ------------------------------------------------------------------


def _overlap(start: int, length: int, end: int) -> int:
    """Length of ``[start, start + length) ∩ [0, end)``."""
    return max(0, min(start + length, end) - max(start, 0))


@dataclass(frozen=True)
class DeconvAxis:
    """One axis of a deconvolution: input length, stride, kernel, crops, output padding."""

    length: int
    stride: int
    kernel: int
    pad_before: int
    pad_after: int
    output_padding: int = 0

    @property
    def out(self) -> int:
        return deconv_output_length(self.length, self.stride, self.kernel, self.pad_before,
                                    self.pad_after, self.output_padding)

    def tap_windows(self) -> list[tuple[int, int]]:
        """Per tap ``k``: ``(first input, count)`` of the inputs reaching in-range outputs."""
        s, out = self.stride, self.out
        windows = []
        for k in range(self.kernel):
            _, q_first, n = phase_outputs(k % s, s, self.pad_before, out)
            _, j_first, m = tap_window(q_first, n, k // s, self.length)
            windows.append((j_first, m))
        return windows

    @property
    def pairs(self) -> int:
        """(output, tap) pairs with an input: REVD / REVD2 MACs per channel pair, per axis."""
        return sum(m for _, m in self.tap_windows())

    @property
    def taps_used(self) -> int:
        return sum(1 for _, m in self.tap_windows() if m)

    @property
    def inputs_used(self) -> int:
        used = bytearray(self.length)
        for j, m in self.tap_windows():
            used[j:j + m] = b"\x01" * m
        return sum(used)

    # STDD: the full (uncropped) output, then a window of it
    @property
    def full(self) -> int:
        return (self.length - 1) * self.stride + self.kernel

    @property
    def full_window(self) -> int:
        return _overlap(self.pad_before, self.out, self.full)

    # STRD: the zero-inserted map with Kd - 1 - P padding (negative: cropped)
    @property
    def strd_before(self) -> int:
        return self.kernel - 1 - self.pad_before

    @property
    def strd_length(self) -> int:
        return ((self.length - 1) * self.stride + 1 + self.strd_before
                + self.kernel - 1 - self.pad_after + self.output_padding)

    @property
    def strd_inputs(self) -> int:
        """Inputs that land inside the (possibly cropped) zero-inserted map."""
        return sum(1 for j in range(self.length)
                   if 0 <= self.stride * j + self.strd_before < self.strd_length)

    # TDC: phase sub-kernels of ceil(Kd/s) taps, a fully padded convolution per phase
    @property
    def tdc_taps(self) -> int:
        return taps_per_phase(self.kernel, self.stride)

    @property
    def tdc_phase_length(self) -> int:
        return self.length + self.tdc_taps - 1

    @property
    def tdc_window(self) -> int:
        return _overlap(self.pad_before, self.out, self.stride * self.tdc_phase_length)


@dataclass(frozen=True)
class ConvAxis:
    """One axis of a convolution: input length, kernel, stride, dilation, padding."""

    length: int
    kernel: int
    pad_before: int
    pad_after: int
    stride: int = 1
    dilation: int = 1

    @property
    def out(self) -> int:
        span = self.dilation * (self.kernel - 1) + 1
        return (self.length + self.pad_before + self.pad_after - span) // self.stride + 1

    def _positions(self) -> list[int]:
        return [o * self.stride - self.pad_before + k * self.dilation
                for o in range(self.out) for k in range(self.kernel)]

    @property
    def pairs(self) -> int:
        """(output, tap) pairs that read a real input (not padding)."""
        return sum(1 for i in self._positions() if 0 <= i < self.length)

    @property
    def inputs_used(self) -> int:
        return len({i for i in self._positions() if 0 <= i < self.length})


# --- formulas -----------------------------------------------------------------------------


def positive_int(value: object, name: str) -> int:
    """An integer ``>= 1`` (not a sequence), else a TypeError/ValueError naming ``name``."""
    if isinstance(value, (Sequence, str, bytes)):
        raise TypeError(f"{name} must be a single integer, got {value!r}")
    return pair(value, name, minimum=1)[0]  # type: ignore[arg-type]


def _conv_traffic(
    n: int, cin: int, cout: int, kh: int, kw: int, groups: int, ah: ConvAxis, aw: ConvAxis,
    eb: int, source: str, source_role: str, sink: str, sink_role: str,
    source_elements: int,
) -> tuple[int, int, list[Traffic]]:
    """MACs, zero MACs and traffic of one dense convolution pass."""
    per = cout * (cin // groups)
    macs = n * per * kh * kw * ah.out * aw.out
    useful = n * per * ah.pairs * aw.pairs
    reads = n * cin * ah.inputs_used * aw.inputs_used
    outs = n * cout * ah.out * aw.out
    traffic = [
        Traffic(source, source_role, source_elements, eb, reads, 0),
        Traffic("weight", "weight", per * kh * kw, eb, per * kh * kw, 0),
        Traffic(sink, sink_role, outs, eb, 0, outs),
    ]
    return macs, macs - useful, traffic


def count_conv(
    *, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], height: int,
    width: int, stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1, groups: int = 1, batch: int = 1, dtype: str = "float32",
) -> Counts:
    """A plain (dense, zero-padded) convolution, ``(batch, in, height, width)`` input."""
    eb, _ = check_dtype(dtype)
    cin, cout = positive_int(in_channels, "in_channels"), positive_int(out_channels,
                                                                       "out_channels")
    n = positive_int(batch, "batch")
    groups = positive_int(groups, "groups")
    if cin % groups or cout % groups:
        raise ValueError(f"groups={groups} must divide in_channels={cin} and out_channels={cout}")
    kh, kw = pair(kernel_size, "kernel_size", minimum=1)
    h, w = positive_int(height, "height"), positive_int(width, "width")
    (sh, sw), (dh, dw) = pair(stride, "stride", minimum=1), pair(dilation, "dilation", minimum=1)
    t, b, le, r = padding4(padding)
    ah, aw = ConvAxis(h, kh, t, b, sh, dh), ConvAxis(w, kw, le, r, sw, dw)
    if ah.out < 1 or aw.out < 1:
        raise ValueError(f"kernel {(kh, kw)} does not fit the padded input {(h, w)}")
    macs, zero, traffic = _conv_traffic(n, cin, cout, kh, kw, groups, ah, aw, eb, "x", "input",
                                        "y", "output", n * cin * h * w)
    return assemble("conv", None, n, dtype, macs, zero, traffic, 0)


def _count_trained(op: str, cin: int, c: int, k: tuple[int, int], rs: tuple[int, int], h: int,
                   w: int, n: int, dtype: str, padding: PaddingLike) -> Counts:
    eb, _ = check_dtype(dtype)
    (kh, kw), (rh, rw) = k, rs
    t, b, le, r = conv_same_padding4(padding, k)
    y = n * c * rh * h * rw * w
    if op == "C-SP":
        ah, aw = ConvAxis(h, kh, t, b), ConvAxis(w, kw, le, r)
        macs, zero, traffic = _conv_traffic(n, cin, c * rh * rw, kh, kw, 1, ah, aw, eb, "x",
                                            "input", "conv output", "transform", n * cin * h * w)
        conv_out = traffic[2]
        traffic[2] = replace(conv_out, reads=conv_out.elements)  # the shuffle reads it all
        traffic.append(Traffic("y", "output", y, eb, 0, y))
        return assemble(op, None, n, dtype, macs, zero, traffic, conv_out.nbytes)
    ah, aw = ConvAxis(rh * h, kh, t, b), ConvAxis(rw * w, kw, le, r)
    resized = n * cin * rh * h * rw * w
    macs, zero, traffic = _conv_traffic(n, cin, c, kh, kw, 1, ah, aw, eb, "resized",
                                        "transform", "y", "output", resized)
    traffic[0] = replace(traffic[0], writes=resized)  # the resize writes it all
    traffic.append(Traffic("x", "input", n * cin * h * w, eb, n * cin * h * w, 0))
    return assemble(op, None, n, dtype, macs, zero, traffic, resized * eb)


def count_deconv(
    *, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
    stride: int | Sequence[int], height: int, width: int, padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0, batch: int = 1, algorithm: str = "revd2",
    dtype: str = "float32", op: str = "deconv",
) -> Counts:
    """A deconvolution (``conv_transpose2d`` semantics; crops may differ per side) run with
    ``algorithm``; weight ``(in_channels, out_channels, Kh, Kw)``."""
    eb, ab = check_dtype(dtype)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}; "
                         f"got {algorithm!r}")
    cin = positive_int(in_channels, "in_channels")
    c = positive_int(out_channels, "out_channels")
    n = positive_int(batch, "batch")
    h, w = positive_int(height, "height"), positive_int(width, "width")
    g = DeconvGeometry(pair(stride, "stride", minimum=1), padding4(padding),
                       pair(kernel_size, "kernel_size", minimum=1),
                       pair(output_padding, "output_padding", minimum=0))
    (sh, sw), (kh, kw), (t, b, le, r), (oph, opw) = (g.stride, g.kernel_size, g.padding,
                                                      g.output_padding)
    if oph >= sh or opw >= sw:
        raise ValueError(f"output_padding {g.output_padding} must be smaller than stride "
                         f"{g.stride} on each axis")
    ah, aw = DeconvAxis(h, sh, kh, t, b, oph), DeconvAxis(w, sw, kw, le, r, opw)
    if ah.out < 1 or aw.out < 1:
        raise ValueError(f"padding {g.padding} crops away the whole output "
                         f"(output size {(ah.out, aw.out)})")
    x_all, y_all = n * cin * h * w, n * c * ah.out * aw.out
    weights = cin * c * kh * kw
    y = Traffic("y", "output", y_all, eb, 0, y_all)
    useful = n * cin * c * ah.pairs * aw.pairs
    temp = 0
    if algorithm in ("revd", "revd2"):
        macs, zero = useful, 0
        traffic = [Traffic("x", "input", x_all, eb, n * cin * ah.inputs_used * aw.inputs_used, 0),
                   Traffic("weight", "weight", weights, eb, cin * c * ah.taps_used * aw.taps_used,
                           0), y]
        if algorithm == "revd":  # zero-initialised output, one read-modify-write per tap
            rmw = n * c * ah.pairs * aw.pairs
            traffic.append(Traffic("y partial sums", "partial_sum", y_all, ab, rmw, rmw))
    elif algorithm == "stdd":
        cols = n * h * w * c * kh * kw
        full = n * c * ah.full * aw.full
        macs, zero = cols * cin, 0
        traffic = [Traffic("x", "input", x_all, eb, x_all, 0),
                   Traffic("weight", "weight", weights, eb, weights, 0),
                   Traffic("columns", "partial_sum", cols, ab, cols, cols),
                   Traffic("full", "partial_sum", full, ab,
                           cols + n * c * ah.full_window * aw.full_window, full + cols), y]
        temp = (cols + full) * ab
    elif algorithm == "strd":
        z = n * cin * ah.strd_length * aw.strd_length
        macs = n * c * cin * kh * kw * ah.out * aw.out
        zero = macs - useful
        traffic = [Traffic("x", "input", x_all, eb, n * cin * ah.strd_inputs * aw.strd_inputs, 0),
                   Traffic("weight", "weight", weights, eb, weights, 0),
                   Traffic("zero-inserted", "transform", z, eb, z, z), y]
        temp = z * eb
    else:  # tdc
        th, tw = ah.tdc_taps, aw.tdc_taps
        phases = n * c * sh * sw * ah.tdc_phase_length * aw.tdc_phase_length
        kernels = c * sh * sw * cin * th * tw
        macs = phases * cin * th * tw
        zero = macs - n * cin * c * (h * kh) * (w * kw)
        traffic = [Traffic("x", "input", x_all, eb, x_all, 0),
                   Traffic("weight", "weight", kernels, eb, kernels, 0),
                   Traffic("phases", "transform", phases, eb, phases, phases),
                   Traffic("interleaved", "transform", phases, eb,
                           n * c * ah.tdc_window * aw.tdc_window, phases), y]
        temp = 2 * phases * eb
    return assemble(op, algorithm, n, dtype, macs, zero, traffic, temp)


def deconv_geometry(op: str, kernel_size: int | Sequence[int], scale: int | Sequence[int],
                    padding: PaddingLike = "same") -> DeconvGeometry:
    """The deconvolution a ``C-SP`` / ``C-NN`` layer becomes (``D-SP`` / ``D-NN``)."""
    if op in ("C-SP", "D-SP"):
        return subpixel_deconv_geometry(kernel_size, scale, padding)
    if op in ("C-NN", "D-NN"):
        return resize_deconv_geometry(kernel_size, scale, padding)
    raise ValueError(f"op must be one of {', '.join(map(repr, OPS))}; got {op!r}")


def count(
    op: str, *, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
    scale: int | Sequence[int], height: int, width: int, batch: int = 1,
    algorithm: str | None = None, dtype: str = "float32", padding: PaddingLike = "same",
) -> Counts:
    """Counts of one upsampling layer ``(batch, in_channels, height, width) →
    (batch, out_channels, rh·height, rw·width)``.

    ``op``: ``"C-SP"`` / ``"C-NN"`` (the layer as trained; ``algorithm`` must be None) or
    ``"D-SP"`` / ``"D-NN"`` (its deconvolution, run with ``algorithm`` from
    :data:`upconv.ALGORITHMS`; None means ``"revd2"``). ``kernel_size`` is the trained conv's.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(map(repr, OPS))}; got {op!r}")
    check_dtype(dtype)
    cin = positive_int(in_channels, "in_channels")
    c = positive_int(out_channels, "out_channels")
    n = positive_int(batch, "batch")
    h, w = positive_int(height, "height"), positive_int(width, "width")
    k, rs = pair(kernel_size, "kernel_size", minimum=1), scale_pair(scale)
    if op.startswith("C-"):
        if algorithm is not None:
            raise ValueError(f"{op} is the layer as trained and takes no algorithm (got "
                             f"{algorithm!r}); use {op.replace('C-', 'D-')} for its "
                             "deconvolution")
        return _count_trained(op, cin, c, k, rs, h, w, n, dtype, padding)
    g = deconv_geometry(op, k, rs, padding)
    return count_deconv(in_channels=cin, out_channels=c, kernel_size=g.kernel_size,
                        stride=g.stride, padding=g.padding, height=h, width=w, batch=n,
                        algorithm="revd2" if algorithm is None else algorithm, dtype=dtype,
                        op=op)
