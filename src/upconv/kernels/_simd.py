"""The REVD2 micro-kernel: one register-blocked strip of phase outputs, emitted as LLVM IR.

Numba compiles loops well but does not keep a 2-D block of accumulators in registers: LLVM
turns ``acc[p, v] += w[p] · x[v]`` into scalar read-modify-writes of a stack array. This
module emits the strip computation directly with llvmlite's IR builder, so every accumulator
is its own SIMD value (``nb × nv`` vectors of ``LANES`` float32), every input vector is loaded
once and feeds ``nb`` fused multiply-adds, and the only memory writes are the final
``nb × nv`` vector stores into the caller's row buffer. ``nb`` and ``nv`` are compile-time
literals, so each ``(nb, nv)`` pair is its own specialised kernel.
"""

from __future__ import annotations

import os

import llvmlite.binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _lanes() -> int:
    """16 with AVX-512, 8 otherwise; ``UPCONV_SIMD_LANES=8`` forces the narrow kernels (to test
    the AVX2 code on an AVX-512 machine). numba's disk cache does not know this choice, so the
    override is refused unless ``NUMBA_CACHE_DIR`` gives it a cache of its own."""
    forced = os.environ.get("UPCONV_SIMD_LANES")
    if forced is None:
        return 16 if llvm_binding.get_host_cpu_features().get("avx512f", False) else 8
    if forced not in ("8", "16"):
        raise ValueError(f"UPCONV_SIMD_LANES={forced!r}: use 8 or 16")
    if not os.environ.get("NUMBA_CACHE_DIR"):
        raise RuntimeError("UPCONV_SIMD_LANES needs NUMBA_CACHE_DIR set to a directory of its "
                           "own: numba's cache would mix kernels of both widths")
    return int(forced)


#: float32 lanes per SIMD vector: 16 with AVX-512, 8 otherwise (AVX2/NEON split wider ones).
LANES: int = _lanes()

#: The most accumulator vectors a strip keeps in registers (AVX-512 has 32, AVX2 16).
MAX_ACCUMULATORS: int = 24 if LANES == 16 else 12

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _splat(builder: ir.IRBuilder, value: ir.Value, vec: ir.VectorType) -> ir.Value:
    """Broadcast a scalar to every lane of ``vec``."""
    undef = ir.Constant(vec, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, vec.count), None))


def _masked_load(builder: ir.IRBuilder, ptr: ir.Value, mask: ir.Value, vec: ir.VectorType
                 ) -> ir.Value:
    """``llvm.masked.load``: lanes off in ``mask`` are neither read nor faulted (they read 0)."""
    vptr = builder.bitcast(ptr, vec.as_pointer())
    fnty = ir.FunctionType(vec, [vec.as_pointer(), _I32, mask.type, vec])
    name = f"llvm.masked.load.v{vec.count}f32.p0"
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return builder.call(fn, [vptr, ir.Constant(_I32, 4), mask, ir.Constant(vec, None)])


#: float32 elements per 64-byte cache line (the step of the software prefetches).
LINE_FLOATS = 16

#: Software prefetch of the inputs this many strips ahead (LLVM locality 3: all cache levels).
#: Without it the kernel reached ~40 GF/s of the ~95 a strip reaches on cache-resident data,
#: with it ~55 (single thread): each strip touches Cin·Th input rows, too many streams for the
#: hardware prefetchers to follow.
PREFETCH_STRIPS = 2


def _prefetch(builder: ir.IRBuilder, ptr: ir.Value, locality: int = 3) -> None:
    """``llvm.prefetch`` for reading into all cache levels (a hint; never faults)."""
    i8p = ir.IntType(8).as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(_I32, 0), ir.Constant(_I32, locality),
                      ir.Constant(_I32, 1)])


def _fma(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
    """``llvm.fma`` on vectors: ``a · b + c`` with one rounding."""
    fnty = ir.FunctionType(a.type, [a.type] * 3)
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.fma.v{a.type.count}f32")
    return builder.call(fn, [a, b, c])


#: Tap windows up to this many taps are unrolled even when every slot reaches all of them
#: (all sub-pixel layers with 3×3 or smaller convolutions): LLVM then schedules a channel's
#: taps as one block instead of running 2- or 3-trip loops. On the development machine,
#: 2-5 % on L1, L3, L4, L5 and H4 (interleaved A/B, same process).
UNROLL_TAPS = 16


def encode_taps(taps: list[tuple[int, int]]) -> str:
    """The ``taps`` literal of :func:`strip_fma`: ``"th×tw,…"`` per slot, or ``""`` (runtime
    tap loops) when every slot reaches the same window of more than :data:`UNROLL_TAPS`."""
    if len(set(taps)) <= 1 and (not taps or taps[0][0] * taps[0][1] > UNROLL_TAPS):
        return ""
    return ",".join(f"{th}x{tw}" for th, tw in taps)


def decode_taps(code: str) -> list[tuple[int, int]]:
    """Inverse of :func:`encode_taps` (``[]`` for the uniform code ``""``)."""
    return [(int(a), int(b)) for a, b in (t.split("x") for t in code.split(","))] if code else []


@intrinsic
def strip_fma(typingctx, x, x_off, sx_ic, sx_row, cin, w, w_off, th_lo, th_hi, th_n,
              tw_n, nvalid, buf, buf_off, pitch, accumulate, col0, w_in, nb, nv, bounded, taps,
              direct, final, y, y_at, ocol0, oh_base, oh, ow, sets, sets_at, pbias, pbias_at,
              ahead, ahead_lo, ahead_hi):
    """One strip of ``nb`` phase outputs × ``nv·LANES`` columns, summed over ``cin`` channels.

    For ``p < nb`` and lane ``v < nvalid`` (input lanes past ``nvalid`` are never read):
    ``buf[buf_off + p·pitch + v] (+)= Σ_{ic<cin} Σ_{th_lo≤th<th_hi} Σ_{tw<tw_n}
    w[w_off + ((ic·th_n + th)·tw_n + tw)·nb + p] · x.flat[x_off + ic·sx_ic − th·sx_row +
    v − tw]``, adding to what ``buf`` holds when ``accumulate`` is true. Offsets and strides
    are in elements (``x``'s rows are contiguous: strided inputs are staged first); ``x``,
    ``w`` and ``buf`` are float32 arrays; ``nb`` and ``nv`` are literals.

    ``bounded`` (literal): lane ``v`` of lane 0's input column ``col0`` reads input column
    ``col0 + v − tw``; with ``bounded`` true, lanes whose column leaves ``[0, w_in)`` are not
    read and count as zero (a zero-padded input, for the edge strips of a row), without it
    every lane ``v < nvalid`` must lie inside.

    ``taps`` (a string literal from :func:`encode_taps`) gives slots their own tap counts: slot
    ``p`` then sums only ``th < Th_p``, ``tw < Tw_p`` (phases of a merged group reach fewer taps
    than the group's ``th_n × tw_n``), with the tap loops unrolled so that each input vector
    is loaded once and meets exactly the slots it reaches: no multiply by a zero weight.

    ``direct`` (literal ``d``: 0, or a column stride of 2 to 4): when ``final`` is true (the
    last block of input channels), the sums go straight to the output instead of ``buf``.
    Slots ``d·k … d·k + d − 1`` of the strip are then the ``d`` column phases of one output row
    (:func:`direct_sets`): their vectors are interleaved in registers (element ``e`` of the
    row's run is slot ``e % d``'s lane ``e // d``), ``pbias`` added (one value per slot, from
    ``pbias_at``), and stored to ``y.flat[y_at + c_off + o_h·ow + ocol0 + e]`` with
    ``(c_off, fh) = sets[sets_at + 2k : … + 2]``, ``o_h = fh + oh_base``; a set with
    ``c_off < 0`` or ``o_h`` outside ``[0, oh)`` is skipped, and elements whose column
    ``ocol0 + e`` leaves ``[0, min(ow, ocol0 + d·nvalid))`` are masked off. The stores of a
    strip then overlap the next strip's arithmetic, where a separate pass over ``buf`` waited
    for them.

    ``ahead`` (None: no prefetch code is emitted) with ``ahead_lo >= 0``: prefetch
    ``ahead[ahead_lo : ahead_hi]`` (float32, one hint per 64-byte line), spread evenly over
    the channel iterations: memory a later step will read (the next channels_last row to
    stage) then arrives while this strip computes. Issued in one burst instead, the hints
    stall on the core's miss buffers and overlap nothing.
    """
    if not all(isinstance(v, types.IntegerLiteral) for v in (nb, nv)):
        return None
    if not isinstance(bounded, types.BooleanLiteral):
        return None
    if not isinstance(taps, types.StringLiteral):
        return None
    if not isinstance(direct, types.IntegerLiteral):
        return None
    n_b, n_v, edge = nb.literal_value, nv.literal_value, bounded.literal_value
    prefetching = not isinstance(ahead, types.NoneType)  # None: no prefetch code at all
    n_d = direct.literal_value
    if n_d and (n_d < 2 or n_b % n_d):
        raise ValueError(f"direct = {n_d} needs 2 <= direct and nb = {n_b} a multiple of it")
    slot_taps = decode_taps(taps.literal_value)
    if slot_taps and len(slot_taps) != n_b:
        raise ValueError(f"taps names {len(slot_taps)} slots for nb = {n_b}")
    width = n_v * LANES

    def codegen(context, builder, sig, args):
        (x_a, x_off_v, sx_ic_v, sx_row_v, cin_v, w_a, w_off_v, th_lo_v, th_hi_v,
         th_n_v, tw_n_v, nvalid_v, buf_a, buf_off_v, pitch_v, accumulate_v, col0_v, w_in_v, _, _,
         _, _, _, final_v, y_a, y_at_v, ocol0_v, oh_base_v, oh_v, ow_v, sets_a, sets_at_v,
         pbias_a, pbias_at_v, ahead_a, ahead_lo_v, ahead_hi_v) = args
        xdata = context.make_array(sig.args[0])(context, builder, x_a).data
        wdata = context.make_array(sig.args[5])(context, builder, w_a).data
        bdata = context.make_array(sig.args[12])(context, builder, buf_a).data
        vec = ir.VectorType(_F32, LANES)
        ivec = ir.VectorType(_I64, LANES)
        zero = ir.Constant(vec, None)
        carry = builder.icmp_signed("!=", context.cast(builder, accumulate_v, sig.args[15],
                                                          types.int64), ir.Constant(_I64, 0))
        accs = []
        for p in range(n_b):
            for j in range(n_v):
                at = builder.add(builder.add(buf_off_v, builder.mul(pitch_v, ir.Constant(_I64, p))),
                                 ir.Constant(_I64, j * LANES))
                ptr = builder.bitcast(builder.gep(bdata, [at]), vec.as_pointer())
                init = builder.select(carry, builder.load(ptr, align=4), zero)
                accs.append(cgutils.alloca_once_value(builder, init))
        limit = _splat(builder, nvalid_v, ivec)
        lanes = [ir.Constant(ivec, list(range(j * LANES, (j + 1) * LANES))) for j in range(n_v)]
        masks = [builder.icmp_signed("<", lane, limit) for lane in lanes]
        # edge masks in 32-bit lanes (one register per vector; columns fit easily)
        cvec = ir.VectorType(_I32, LANES)
        col_lanes = [ir.Constant(cvec, list(range(j * LANES, (j + 1) * LANES)))
                     for j in range(n_v)]

        def row_start(x_ic: ir.Value, th: ir.Value) -> ir.Value:
            x_row = builder.sub(x_ic, builder.mul(th, sx_row_v))
            for j in range(n_v + 1):  # the next strip's inputs, while this one computes
                _prefetch(builder, builder.gep(xdata, [builder.add(
                    x_row, ir.Constant(_I64, PREFETCH_STRIPS * width + j * LANES))]))
            return x_row

        def tap(x_row: ir.Value, w_row: ir.Value, tw: ir.Value, users: range | list[int]) -> None:
            """Load the tap's input vectors once; one FMA per (user slot, vector)."""
            x_at = builder.sub(x_row, tw)
            w_at = builder.add(w_off_v,
                               builder.mul(builder.add(w_row, tw), ir.Constant(_I64, n_b)))
            xs = []
            if edge:
                # lane columns c = col0 − tw + lane must satisfy 0 <= c < bound, with bound =
                # min(w_in, col0 − tw + nvalid): one unsigned compare per vector
                first = builder.sub(col0_v, tw)
                bound = builder.add(first, nvalid_v)
                bound = builder.select(builder.icmp_signed("<", w_in_v, bound), w_in_v, bound)
                bound = builder.select(builder.icmp_signed("<", bound, ir.Constant(_I64, 0)),
                                       ir.Constant(_I64, 0), bound)
                shift = _splat(builder, builder.trunc(first, _I32), cvec)
                limit_c = _splat(builder, builder.trunc(bound, _I32), cvec)
            for j in range(n_v):
                ptr = builder.gep(xdata, [builder.add(x_at, ir.Constant(_I64, j * LANES))])
                mask = masks[j]
                if edge:
                    mask = builder.icmp_unsigned("<", builder.add(col_lanes[j], shift), limit_c)
                xs.append(_masked_load(builder, ptr, mask, vec))
            for p in users:
                wp = builder.load(builder.gep(wdata, [builder.add(w_at, ir.Constant(_I64, p))]))
                wv = _splat(builder, wp, vec)
                for j in range(n_v):
                    slot = accs[p * n_v + j]
                    builder.store(_fma(builder, wv, xs[j], builder.load(slot)), slot)

        # prefetch lines per channel iteration: ceil(lines / cin), lines = ceil(span / 16)
        if prefetching:
            adata = context.make_array(sig.args[34])(context, builder, ahead_a).data
            pf_on = builder.icmp_signed(">=", ahead_lo_v, ir.Constant(_I64, 0))
            pf_lines = builder.sdiv(builder.add(builder.sub(ahead_hi_v, ahead_lo_v),
                                                ir.Constant(_I64, LINE_FLOATS - 1)),
                                    ir.Constant(_I64, LINE_FLOATS))
            one = ir.Constant(_I64, 1)
            cin_pos = builder.select(builder.icmp_signed("<", cin_v, one), one, cin_v)
            pf_per = builder.sdiv(builder.add(pf_lines, builder.sub(cin_pos, one)), cin_pos)
            pf_span = builder.mul(pf_per, ir.Constant(_I64, LINE_FLOATS))

        with cgutils.for_range(builder, cin_v) as ic_loop:
            ic = ic_loop.index
            if prefetching:
                with builder.if_then(pf_on, likely=False):
                    lo = builder.add(ahead_lo_v, builder.mul(ic, pf_span))
                    hi = builder.add(lo, pf_span)
                    hi = builder.select(builder.icmp_signed("<", ahead_hi_v, hi), ahead_hi_v,
                                        hi)
                    with cgutils.for_range_slice(builder, lo, hi,
                                                  ir.Constant(_I64, LINE_FLOATS)) as (at, _):
                        _prefetch(builder, builder.gep(adata, [at]))
            x_ic = builder.add(x_off_v, builder.mul(ic, sx_ic_v))
            w_ic = builder.mul(ic, th_n_v)
            if not slot_taps:  # every slot reaches every tap: runtime tap loops
                with cgutils.for_range_slice(builder, th_lo_v, th_hi_v, ir.Constant(_I64, 1),
                                              inc=True) as (th, _):
                    x_row = row_start(x_ic, th)
                    w_row = builder.mul(builder.add(w_ic, th), tw_n_v)
                    with cgutils.for_range(builder, tw_n_v) as tw_loop:
                        tap(x_row, w_row, tw_loop.index, range(n_b))
            else:  # unrolled: each tap meets only the slots it reaches
                for th_k in range(max(t for t, _ in slot_taps)):
                    th = ir.Constant(_I64, th_k)
                    inside = builder.and_(builder.icmp_signed("<=", th_lo_v, th),
                                          builder.icmp_signed("<", th, th_hi_v))
                    with builder.if_then(inside):
                        x_row = row_start(x_ic, th)
                        w_row = builder.mul(builder.add(w_ic, th), tw_n_v)
                        for tw_k in range(max(t for _, t in slot_taps)):
                            users = [p for p, (a, b) in enumerate(slot_taps)
                                     if th_k < a and tw_k < b]
                            if users:
                                tap(x_row, w_row, ir.Constant(_I64, tw_k), users)
        def to_buffer() -> None:
            for p in range(n_b):
                for j in range(n_v):
                    at = builder.add(builder.add(buf_off_v, builder.mul(
                        pitch_v, ir.Constant(_I64, p))), ir.Constant(_I64, j * LANES))
                    builder.store(builder.load(accs[p * n_v + j]), builder.bitcast(
                        builder.gep(bdata, [at]), vec.as_pointer()), align=4)

        def to_output() -> None:
            ydata = context.make_array(sig.args[24])(context, builder, y_a).data
            sdata = context.make_array(sig.args[30])(context, builder, sets_a).data
            pdata = context.make_array(sig.args[32])(context, builder, pbias_a).data
            # element e of a set's run is valid when 0 <= ocol0 + e < min(ow, ocol0 + d·nvalid)
            bound = builder.add(ocol0_v, builder.mul(nvalid_v, ir.Constant(_I64, n_d)))
            bound = builder.select(builder.icmp_signed("<", ow_v, bound), ow_v, bound)
            bound = builder.select(builder.icmp_signed("<", bound, ir.Constant(_I64, 0)),
                                   ir.Constant(_I64, 0), bound)
            shift = _splat(builder, builder.trunc(ocol0_v, _I32), cvec)
            limit_c = _splat(builder, builder.trunc(bound, _I32), cvec)
            for k in range(n_b // n_d):
                at = builder.add(sets_at_v, ir.Constant(_I64, 2 * k))
                c_off = builder.load(builder.gep(sdata, [at]))
                o_h = builder.add(oh_base_v, builder.load(builder.gep(
                    sdata, [builder.add(at, ir.Constant(_I64, 1))])))
                ok = builder.and_(builder.icmp_signed(">=", c_off, ir.Constant(_I64, 0)),
                                  builder.icmp_unsigned("<", o_h, oh_v))
                with builder.if_then(ok):
                    row = builder.add(builder.add(y_at_v, c_off),
                                      builder.add(builder.mul(o_h, ow_v), ocol0_v))
                    biases = [_splat(builder, builder.load(builder.gep(pdata, [builder.add(
                        pbias_at_v, ir.Constant(_I64, k * n_d + i))])), vec) for i in range(n_d)]
                    for j in range(n_v):
                        srcs = [builder.fadd(builder.load(accs[(k * n_d + i) * n_v + j]),
                                             biases[i]) for i in range(n_d)]
                        wide = _concat(builder, srcs)
                        for m in range(n_d):
                            e0 = (j * n_d + m) * LANES
                            pick = [(e % n_d) * LANES + e // n_d
                                    for e in range(m * LANES, (m + 1) * LANES)]
                            out = builder.shuffle_vector(wide, ir.Constant(wide.type, ir.Undefined),
                                                         ir.Constant(cvec, pick))
                            lanes_e = ir.Constant(cvec, list(range(e0, e0 + LANES)))
                            mask = builder.icmp_unsigned("<", builder.add(lanes_e, shift), limit_c)
                            ptr = builder.gep(ydata, [builder.add(row, ir.Constant(_I64, e0))])
                            _masked_store(builder, out, ptr, mask)

        if n_d:
            is_final = builder.icmp_signed("!=", context.cast(
                builder, final_v, sig.args[23], types.int64), ir.Constant(_I64, 0))
            with builder.if_else(is_final) as (then, otherwise):
                with then:
                    to_output()
                with otherwise:
                    to_buffer()
        else:
            to_buffer()
        return context.get_dummy_value()

    sig = types.void(x, x_off, sx_ic, sx_row, cin, w, w_off, th_lo, th_hi, th_n, tw_n,
                     nvalid, buf, buf_off, pitch, accumulate, col0, w_in, nb, nv, bounded, taps,
                     direct, final, y, y_at, ocol0, oh_base, oh, ow, sets, sets_at, pbias,
                     pbias_at, ahead, ahead_lo, ahead_hi)
    return sig, codegen


def _concat(builder: ir.IRBuilder, parts: list[ir.Value]) -> ir.Value:
    """One vector of ``parts`` (equal-length vectors) side by side, padded with undefined
    lanes to a power-of-two count of parts."""
    while len(parts) > 1:
        if len(parts) % 2:
            parts = [*parts, ir.Constant(parts[0].type, ir.Undefined)]
        n = parts[0].type.count
        idx = ir.Constant(ir.VectorType(_I32, 2 * n), list(range(2 * n)))
        parts = [builder.shuffle_vector(parts[i], parts[i + 1], idx)
                 for i in range(0, len(parts), 2)]
    return parts[0]


def _masked_store(builder: ir.IRBuilder, value: ir.Value, ptr: ir.Value, mask: ir.Value) -> None:
    """``llvm.masked.store``: lanes off in ``mask`` are neither written nor faulted."""
    vec = value.type
    vptr = builder.bitcast(ptr, vec.as_pointer())
    fnty = ir.FunctionType(ir.VoidType(), [vec, vec.as_pointer(), _I32, mask.type])
    name = f"llvm.masked.store.v{vec.count}f32.p0"
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [value, vptr, ir.Constant(_I32, 4), mask])


def butterfly_masks(n: int) -> list[tuple[int, list[int], list[int]]]:
    """The shuffles that transpose an ``n × n`` tile held as ``n`` vectors of ``n`` lanes.

    Stage ``b`` (``n/2, n/4, …, 1``) swaps the off-diagonal ``b × b`` blocks of every
    ``2b × 2b`` block: for each row pair ``(i, i + b)`` with ``i & b == 0``, the new row ``i``
    takes lane ``j`` from row ``i`` where ``j & b == 0`` and lane ``j − b`` of row ``i + b``
    otherwise; the new row ``i + b`` takes lane ``j + b`` of row ``i`` or lane ``j`` of row
    ``i + b``. Returns ``(b, mask_low, mask_high)`` per stage, masks indexing the
    concatenation ``row_i ‖ row_{i+b}`` (lanes ``0..n−1`` then ``n..2n−1``).
    """
    stages = []
    b = n // 2
    while b >= 1:
        low = [j if not j & b else n + j - b for j in range(n)]
        high = [j + b if not j & b else n + j for j in range(n)]
        stages.append((b, low, high))
        b //= 2
    return stages


@intrinsic
def transpose_tile(typingctx, src, src_off, src_stride, dst, dst_off, dst_stride, dst_copy):
    """Transpose one ``LANES × LANES`` float32 tile: ``dst[dst_off + j·dst_stride + k] =
    src[src_off + k·src_stride + j]`` for ``j, k < LANES`` (``LANES`` vector loads, the
    butterfly shuffles of :func:`butterfly_masks`, ``LANES`` vector stores), each row also
    stored at ``+ dst_copy`` when ``dst_copy`` is not 0. Offsets and strides in elements;
    ``src`` and ``dst`` float32 arrays."""
    n = LANES

    def codegen(context, builder, sig, args):
        s_a, s_off, s_stride, d_a, d_off, d_stride, d_copy = args
        sdata = context.make_array(sig.args[0])(context, builder, s_a).data
        ddata = context.make_array(sig.args[3])(context, builder, d_a).data
        vec = ir.VectorType(_F32, n)
        rows = []
        for k in range(n):
            at = builder.add(s_off, builder.mul(s_stride, ir.Constant(_I64, k)))
            ptr = builder.bitcast(builder.gep(sdata, [at]), vec.as_pointer())
            rows.append(builder.load(ptr, align=4))
        for b, low, high in butterfly_masks(n):
            new = list(rows)
            for i in range(n):
                if i & b:
                    continue
                new[i] = builder.shuffle_vector(rows[i], rows[i + b], ir.Constant(
                    ir.VectorType(_I32, n), low))
                new[i + b] = builder.shuffle_vector(rows[i], rows[i + b], ir.Constant(
                    ir.VectorType(_I32, n), high))
            rows = new
        copy = builder.icmp_signed("!=", d_copy, ir.Constant(_I64, 0))
        for j in range(n):
            at = builder.add(d_off, builder.mul(d_stride, ir.Constant(_I64, j)))
            builder.store(rows[j], builder.bitcast(builder.gep(ddata, [at]), vec.as_pointer()),
                          align=4)
            with builder.if_then(copy):
                at2 = builder.add(at, d_copy)
                builder.store(rows[j], builder.bitcast(builder.gep(ddata, [at2]),
                                                       vec.as_pointer()), align=4)
        return context.get_dummy_value()

    sig = types.void(src, types.int64, types.int64, dst, types.int64, types.int64, types.int64)
    return sig, codegen


@intrinsic
def move_floats(typingctx, array, dst_off, src_off, count):
    """``array[dst_off : dst_off + count] = array[src_off : src_off + count]`` as one
    ``llvm.memmove`` (overlap allowed): a vectorised block move, where numba compiles the
    equivalent element loop to scalar copies. Offsets and count in elements; ``array`` a
    float32 array."""
    if not (isinstance(array, types.Array) and array.dtype == types.float32):
        return None

    def codegen(context, builder, sig, args):
        arr, dst, src, n = args
        data = context.make_array(sig.args[0])(context, builder, arr).data
        cgutils.raw_memmove(builder, builder.gep(data, [dst]), builder.gep(data, [src]), n, 4,
                            align=4)
        return context.get_dummy_value()

    return types.void(array, types.int64, types.int64, types.int64), codegen
