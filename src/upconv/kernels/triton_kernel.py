"""The REVD2 Triton kernel itself (imported only when it is first used: it imports Triton).

See :mod:`upconv.kernels.triton_revd2` for what a program computes and how it is launched.
Whether these functions run compiled or in Triton's interpreter is fixed when this module is
imported (``TRITON_INTERPRET``), as it is for Triton's own library functions.
"""

import triton
import triton.language as tl

# Sizes do not select code: do not specialise on them (one compile serves every shape),
# except the input width and the first tile column (a multiple of block_w), whose
# 16-divisibility lets Triton prove that a tile's untapped column loads are aligned and their
# mask constant over a vector. Input strides are specialised as Triton does by default (== 1:
# which axis is contiguous, NCHW or channels_last; divisible by 16: aligned vector loads, which
# needs every term of the offset to be). Output strides only on == 1: the interleaved stores
# are not vectorised anyway, and their alignment would multiply the compiled variants.
SIZES = ["CIN", "H", "OH", "OW", "SH", "SW", "TOP", "LEFT", "QH_LO", "TILES_H", "TILES_W",
         "N_BLOCKS", "BPH", "BPW"]


@triton.jit
def _tap_step(acc, x_img, w_tap, ih, iw, ki, kk, jn, CIN, H, W, sxc, sxh, sxw,
              BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, DOT: tl.constexpr,
              UPCAST: tl.constexpr, EVEN_K: tl.constexpr, TF32X3: tl.constexpr):
    """``acc += x[ih, iw, channel step ki] @ w_tap[channel step ki]`` for one tap."""
    ok = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    x_px = x_img + ih * sxh + iw * sxw
    if DOT:
        ic = ki * BLOCK_K + kk
        if EVEN_K:  # noqa: SIM108 (a constexpr branch; a mask constant along channels keeps
            # channels_last loads vectorised)
            mask = ok[:, None]
        else:
            mask = ok[:, None] & (ic < CIN)[None, :]
        a = tl.load(x_px[:, None] + ic[None, :] * sxc, mask=mask, other=0.0)
        b = tl.load(w_tap + ic[:, None] * BLOCK_N + jn[None, :])
        if UPCAST:  # the interpreter's bf16 dot is wrong; bf16 products are exact in fp32
            acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        elif TF32X3:  # float32 operands as 3×TF32: float32-grade accuracy on tensor cores
            acc = tl.dot(a, b, acc, input_precision="tf32x3")
        else:  # float32 operands as TF32 (as cuDNN convolutions by default); 16-bit as is
            acc = tl.dot(a, b, acc, input_precision="tf32")
    else:  # FMA: one rank-1 update per channel, 2-D tensors only (a broadcast 3-D product
        # reduced over its middle axis was miscompiled on sm_90 by Triton 3.6: wrong sums)
        for k in tl.static_range(BLOCK_K):
            ic = ki * BLOCK_K + k
            a = tl.load(x_px + ic * sxc, mask=ok if EVEN_K else ok & (ic < CIN), other=0.0)
            b = tl.load(w_tap + ic * BLOCK_N + jn)
            acc += a.to(tl.float32)[:, None] * b.to(tl.float32)[None, :]
    return acc


@triton.jit(do_not_specialize=SIZES,
            do_not_specialize_on_alignment=["syn", "syc", "syh", "syw"])
def revd2_kernel(x_ptr, w_ptr, y_ptr, bias_ptr, slot_c_ptr, slot_fh_ptr, slot_fw_ptr,
                 sbias_ptr, CIN, H, W, OH, OW, SH, SW, TOP, LEFT, QH_LO, QW_LO, TILES_H,
                 TILES_W, N_BLOCKS, BPH, BPW, sxn, sxc, sxh, sxw, syn, syc, syh, syw,
                 TH: tl.constexpr, TW: tl.constexpr, K_ITERS: tl.constexpr,
                 BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, DOT: tl.constexpr, UPCAST: tl.constexpr,
                 BIAS_MODE: tl.constexpr, FLAT: tl.constexpr, EVEN_K: tl.constexpr,
                 TF32X3: tl.constexpr, SHUF_H: tl.constexpr = 0, SHUF_W: tl.constexpr = 0,
                 ALIGN: tl.constexpr = 1):
    # program → (image, tile row, tile column, slot block); slot blocks vary fastest so
    # that the programs sharing an input tile run together (L2 reuse)
    pid = tl.program_id(0)
    blk = pid % N_BLOCKS
    tile = pid // N_BLOCKS
    tile_w = tile % TILES_W
    tile = tile // TILES_W
    tile_h = tile % TILES_H
    n = tile // TILES_H
    BLOCK_M: tl.constexpr = BLOCK_H * BLOCK_W
    m = tl.arange(0, BLOCK_M)
    qh = QH_LO + tile_h * BLOCK_H + m // BLOCK_W  # phase-grid row of each pixel
    qw = QW_LO + tile_w * BLOCK_W + m % BLOCK_W
    kk = tl.arange(0, BLOCK_K)
    jn = tl.arange(0, BLOCK_N)
    x_img = x_ptr + n * sxn
    TAP_SIZE: tl.constexpr = K_ITERS * BLOCK_K * BLOCK_N
    w_blk = w_ptr + blk * (TH * TW * TAP_SIZE)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # tap (t_h, t_w) reaches phase-grid pixel q from input q − t; masked loads give the
    # zero padding (masked-off lanes touch no memory, so their offsets may be anything)
    if FLAT:  # one loop over (tap, channel step): Triton can software-pipeline it
        if TH * TW > 0:  # (phases no tap reaches hold the bias alone)
            for it in range(TH * TW * K_ITERS):
                tap = it // K_ITERS
                t_h = tap // TW
                t_w = tap % TW
                acc = _tap_step(acc, x_img, w_blk + tap * TAP_SIZE, qh - t_h, qw - t_w,
                                it % K_ITERS, kk, jn, CIN, H, W, sxc, sxh, sxw, BLOCK_K,
                                BLOCK_N, DOT, UPCAST, EVEN_K, TF32X3)
    else:  # taps unrolled: the shifted loads of a tile issue back to back
        for t_h in tl.static_range(TH):
            for t_w in tl.static_range(TW):
                for ki in range(K_ITERS):
                    acc = _tap_step(acc, x_img, w_blk + (t_h * TW + t_w) * TAP_SIZE,
                                    qh - t_h, qw - t_w, ki, kk, jn, CIN, H, W, sxc, sxh,
                                    sxw, BLOCK_K, BLOCK_N, DOT, UPCAST, EVEN_K, TF32X3)
    # epilogue: bias, then one store per output at its interleaved position
    sl = blk * BLOCK_N + jn
    if BIAS_MODE == 1:
        acc += tl.load(sbias_ptr + sl)[None, :]
    if SHUF_H == 0 or BIAS_MODE == 2:
        c = tl.load(slot_c_ptr + sl)
        fh = tl.load(slot_fh_ptr + sl)
        fw = tl.load(slot_fw_ptr + sl)
        oh = fh[None, :] + SH * qh[:, None] - TOP
        ow = fw[None, :] + SW * qw[:, None] - LEFT
        mask = (c >= 0)[None, :] & (oh >= 0) & (oh < OH) & (ow >= 0) & (ow < OW)
    if BIAS_MODE == 2:
        at = tl.where(mask, c[None, :] * (BPH * BPW) + (oh % BPH) * BPW + ow % BPW, 0)
        acc += tl.load(bias_ptr + at, mask=mask, other=0.0)
    if SHUF_H == 0:
        out = n * syn + c[None, :] * syc + oh * syh + ow * syw
        tl.store(y_ptr + out, acc.to(y_ptr.dtype.element_ty), mask=mask)
    else:
        # the block holds whole channels, each channel's SHUF_H × SHUF_W phases in order
        # (c, fh, fw): rearranged in registers into output rows, a pixel shuffle of the tile,
        # whose stores then run along output columns (coalesced, vectorised) instead of
        # one phase's every SW-th column
        CB: tl.constexpr = BLOCK_N // (SHUF_H * SHUF_W)
        t = tl.reshape(acc.to(y_ptr.dtype.element_ty), (BLOCK_H, BLOCK_W, CB, SHUF_H, SHUF_W))
        t = tl.reshape(tl.permute(t, (2, 0, 3, 1, 4)), (CB, BLOCK_H * SHUF_H, BLOCK_W * SHUF_W))
        cc = tl.load(slot_c_ptr + blk * BLOCK_N + tl.arange(0, CB) * (SHUF_H * SHUF_W))
        oh = SHUF_H * (QH_LO + tile_h * BLOCK_H) - TOP + tl.arange(0, BLOCK_H * SHUF_H)
        ow0 = SHUF_W * (QW_LO + tile_w * BLOCK_W) - LEFT
        cols = tl.arange(0, BLOCK_W * SHUF_W)
        row = n * syn + cc[:, None, None] * syc + oh[None, :, None] * syh + ow0 * syw
        if ALIGN > 1:  # the launcher checked: rows start on ALIGN elements (16 bytes), and
            # so does every ALIGN-column group of the output width: vector stores
            row = tl.multiple_of(row, [ALIGN, ALIGN, ALIGN])
        ow = ow0 + (cols // ALIGN) * ALIGN  # masks constant over an aligned group
        mask = (cc >= 0)[:, None, None] & ((oh >= 0) & (oh < OH))[None, :, None] \
            & ((ow >= 0) & (ow < OW))[None, None, :]
        tl.store(y_ptr + row + cols[None, None, :] * syw, t, mask=mask)
