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

import llvmlite.binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: float32 lanes per SIMD vector: 16 with AVX-512, 8 otherwise (AVX2/NEON split wider ones).
LANES: int = 16 if llvm_binding.get_host_cpu_features().get("avx512f", False) else 8

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


def _gather(builder: ir.IRBuilder, ptr: ir.Value, stride: ir.Value, mask: ir.Value,
            vec: ir.VectorType) -> ir.Value:
    """Lanes ``ptr[lane · stride]`` for a strided row (channels_last), one scalar load each.

    Masked-off lanes are not read (their loads sit behind a branch) and hold 0.
    """
    out = ir.Constant(vec, None)
    for lane in range(vec.count):
        on = builder.extract_element(mask, ir.Constant(_I32, lane))
        origin = builder.block
        with builder.if_then(on):
            value = builder.load(builder.gep(ptr, [builder.mul(stride, ir.Constant(_I64, lane))]))
            loaded = builder.block
        phi = builder.phi(_F32)
        phi.add_incoming(value, loaded)
        phi.add_incoming(ir.Constant(_F32, 0.0), origin)
        out = builder.insert_element(out, phi, ir.Constant(_I32, lane))
    return out


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


@intrinsic
def strip_fma(typingctx, x, x_off, sx_ic, sx_row, sx_col, cin, w, w_off, th_lo, th_hi, th_n,
              tw_n, nvalid, buf, buf_off, accumulate, nb, nv, unit):
    """One strip of ``nb`` phase outputs × ``nv·LANES`` columns, summed over ``cin`` channels.

    For ``p < nb`` and lane ``v < nvalid`` (input lanes past ``nvalid`` are never read):
    ``buf[buf_off + p·nv·LANES + v] (+)= Σ_{ic<cin} Σ_{th_lo≤th<th_hi} Σ_{tw<tw_n}
    w[w_off + ((ic·th_n + th)·tw_n + tw)·nb + p] · x.flat[x_off + ic·sx_ic − th·sx_row +
    (v − tw)·sx_col]``, adding to what ``buf`` holds when ``accumulate`` is true. Offsets and
    strides are in elements; ``x``, ``w`` and ``buf`` are float32 arrays; ``nb``, ``nv`` and
    ``unit`` (``sx_col == 1``) are literals.
    """
    literals = (nb, nv, unit)
    if not all(isinstance(v, (types.IntegerLiteral, types.BooleanLiteral)) for v in literals):
        return None
    n_b, n_v, contiguous = nb.literal_value, nv.literal_value, bool(unit.literal_value)
    width = n_v * LANES

    def codegen(context, builder, sig, args):
        (x_a, x_off_v, sx_ic_v, sx_row_v, sx_col_v, cin_v, w_a, w_off_v, th_lo_v, th_hi_v,
         th_n_v, tw_n_v, nvalid_v, buf_a, buf_off_v, accumulate_v, _, _, _) = args
        xdata = context.make_array(sig.args[0])(context, builder, x_a).data
        wdata = context.make_array(sig.args[6])(context, builder, w_a).data
        bdata = context.make_array(sig.args[13])(context, builder, buf_a).data
        vec = ir.VectorType(_F32, LANES)
        ivec = ir.VectorType(_I64, LANES)
        zero = ir.Constant(vec, None)
        carry = builder.icmp_signed("!=", context.cast(builder, accumulate_v, sig.args[15],
                                                          types.int64), ir.Constant(_I64, 0))
        accs = []
        for p in range(n_b):
            for j in range(n_v):
                at = builder.add(buf_off_v, ir.Constant(_I64, p * width + j * LANES))
                ptr = builder.bitcast(builder.gep(bdata, [at]), vec.as_pointer())
                init = builder.select(carry, builder.load(ptr, align=4), zero)
                accs.append(cgutils.alloca_once_value(builder, init))
        limit = _splat(builder, nvalid_v, ivec)
        lanes = [ir.Constant(ivec, list(range(j * LANES, (j + 1) * LANES))) for j in range(n_v)]
        masks = [builder.icmp_signed("<", lane, limit) for lane in lanes]
        step = builder.mul(sx_col_v, ir.Constant(_I64, LANES))
        with cgutils.for_range(builder, cin_v) as ic_loop:
            ic = ic_loop.index
            x_ic = builder.add(x_off_v, builder.mul(ic, sx_ic_v))
            w_ic = builder.mul(ic, th_n_v)
            with cgutils.for_range_slice(builder, th_lo_v, th_hi_v, ir.Constant(_I64, 1),
                                          inc=True) as (th, _):
                x_row = builder.sub(x_ic, builder.mul(th, sx_row_v))
                if contiguous:  # the next strip's inputs, while this one computes
                    for j in range(n_v + 1):
                        _prefetch(builder, builder.gep(xdata, [builder.add(
                            x_row, ir.Constant(_I64, PREFETCH_STRIPS * width + j * LANES))]))
                w_row = builder.mul(builder.add(w_ic, th), tw_n_v)
                with cgutils.for_range(builder, tw_n_v) as tw_loop:
                    tw = tw_loop.index
                    x_at = builder.sub(x_row, builder.mul(tw, sx_col_v))
                    w_at = builder.add(w_off_v,
                                       builder.mul(builder.add(w_row, tw), ir.Constant(_I64, n_b)))
                    xs = []
                    for j in range(n_v):
                        ptr = builder.gep(xdata, [builder.add(x_at, builder.mul(
                            step, ir.Constant(_I64, j)))])
                        if contiguous:
                            xs.append(_masked_load(builder, ptr, masks[j], vec))
                        else:
                            xs.append(_gather(builder, ptr, sx_col_v, masks[j], vec))
                    for p in range(n_b):
                        wp = builder.load(builder.gep(wdata, [builder.add(w_at,
                                                                          ir.Constant(_I64, p))]))
                        wv = _splat(builder, wp, vec)
                        for j in range(n_v):
                            slot = accs[p * n_v + j]
                            builder.store(_fma(builder, wv, xs[j], builder.load(slot)), slot)
        for p in range(n_b):
            for j in range(n_v):
                at = builder.add(buf_off_v, ir.Constant(_I64, p * width + j * LANES))
                builder.store(builder.load(accs[p * n_v + j]),
                              builder.bitcast(builder.gep(bdata, [at]), vec.as_pointer()), align=4)
        return context.get_dummy_value()

    sig = types.void(x, x_off, sx_ic, sx_row, sx_col, cin, w, w_off, th_lo, th_hi, th_n, tw_n,
                     nvalid, buf, buf_off, accumulate, nb, nv, unit)
    return sig, codegen
