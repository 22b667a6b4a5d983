"""Compile the REVD2 Triton kernel for an NVIDIA target without a GPU (Triton's own compiler
and the ``ptxas`` it bundles), with the types and specialisations the launcher would give it.

The test helper behind ``tests/test_triton_compile.py``: the interpreter checks what the
kernel computes, this checks that the compiled path (TTIR → TTGIR → LLVM → PTX → cubin) accepts
it and how much shared memory each variant needs.
"""

from __future__ import annotations

import torch

from upconv.kernels import triton_plan as tp
from upconv.kernels import triton_revd2 as tr

TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16",
                torch.int32: "i32"}


def compile_call(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride,
                 padding, out_size, config: tp.Config, capability: int = 90) -> list:
    """Compile every launch of a call under ``config`` for ``sm_<capability>``; returns the
    compiled kernels (``.metadata.shared`` is their shared memory in bytes)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from upconv.kernels.triton_kernel import SIZES, revd2_kernel

    y = tr.new_output(x, weight.shape[1], out_size)
    no_align = {"syn", "syc", "syh", "syw"}
    out = []
    for _grid, args, meta in tr.prepare(x, weight, bias, stride, padding, out_size, config):
        wpack, bias_t, c, fh, fw, sbias, *ints = args
        values = [x, wpack, y, bias_t, c, fh, fw, sbias, *ints, *y.stride()]
        options = {k: meta.pop(k) for k in ("num_warps", "num_stages") if k in meta}
        signature, constants, attrs = {}, dict(meta), {}
        for i, (name, value) in enumerate(zip(revd2_kernel.arg_names, values, strict=False)):
            if isinstance(value, torch.Tensor):
                signature[name] = "*" + TRITON_TYPES[value.dtype]
                if value.data_ptr() % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
            elif name not in SIZES and value == 1:
                signature[name], constants[name] = "constexpr", 1
            else:
                signature[name] = "i32"
                if name not in SIZES and name not in no_align and value % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
        for name in meta:
            signature[name] = "constexpr"
        src = ASTSource(revd2_kernel, signature, constants, attrs)
        out.append(triton.compile(src, target=GPUTarget("cuda", capability, 32),
                                  options=options))
    return out
