"""Run a compiled kernel on PyTorch's own OpenMP threads.

A compiled parallel kernel with a thread pool of its own (numba's) competes for the cores with
PyTorch's OpenMP team, whose threads spin-wait for a while after every PyTorch op: in a default
process, where a PyTorch convolution runs right before the upsampler, the kernel's threads then
wait for a scheduler tick while PyTorch's spin (measured: the kernel lost its 1.6× lead over
conv + pixel shuffle and ran at 0.95×). This module instead hands the kernel to the OpenMP
runtime PyTorch loaded (``GOMP_parallel``, exported by libgomp and, for compatibility, by
LLVM's and Intel's runtimes): the same team that just ran PyTorch's op runs ours, with no
hand-over and no environment variable.

The parallel body is a numba ``cfunc`` ``void body(void *block)``: every thread of the team
calls it with the same ``block`` (an int64 array describing the work) and takes work from
atomic counters in it (:func:`atomic_add`). Where no such runtime is found (PyTorch built
without OpenMP, or a platform without ``/proc/self/maps``), Python threads call the body
instead (ctypes releases the GIL).
"""

from __future__ import annotations

import ctypes
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

#: Names of the OpenMP runtimes PyTorch ships or links (GNU, Intel, LLVM).
_OPENMP_NAMES = ("libgomp", "libiomp5", "libomp")


@intrinsic
def atomic_add(typingctx, array, index, value):
    """``array[index] += value`` atomically; returns the old value (int64 arrays)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        arr, i, v = args
        data = context.make_array(sig.args[0])(context, builder, arr).data
        ptr = builder.gep(data, [i])
        return builder.atomic_rmw("add", ptr, context.cast(builder, v, sig.args[2], types.int64),
                                  "monotonic")

    return types.int64(array, index, value), codegen


def _pointer_intrinsic(dtype: types.Type, llvm_type: ir.Type):
    @intrinsic
    def from_address(typingctx, address):
        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], llvm_type.as_pointer())

        return types.CPointer(dtype)(types.int64), codegen

    return from_address


#: ``float32 *`` / ``int64 *`` from an address held in an int64 (for ``numba.carray``).
f32_ptr = _pointer_intrinsic(types.float32, ir.FloatType())
i64_ptr = _pointer_intrinsic(types.int64, ir.IntType(64))


@intrinsic
def block_from(typingctx, pointer):
    """The ``int64 *`` a ``void *`` cfunc argument points to."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64).as_pointer())

    return types.CPointer(types.int64)(types.voidptr), codegen


def _loaded_libraries() -> list[str]:
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    return list(dict.fromkeys(line.split(None, 5)[5] for line in maps
                              if len(line.split(None, 5)) == 6 and "/" in line))


@functools.cache
def torch_openmp() -> ctypes.CDLL | None:
    """The OpenMP runtime PyTorch's ATen runs its parallel loops on, or None.

    Found among the libraries this process has loaded, preferring one inside PyTorch's own
    package (a second runtime, e.g. the system's libgomp loaded by another extension, has a
    team of its own and would not help).
    """
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    candidates = [p for p in _loaded_libraries()
                  if os.path.basename(p).startswith(_OPENMP_NAMES)]
    torch_dir = str(Path(torch.__file__).parent)
    candidates.sort(key=lambda p: not p.startswith(torch_dir))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            fn = lib.GOMP_parallel
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        fn.restype = None
        return lib
    return None


_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_POOL: tuple[ThreadPoolExecutor, int] | None = None  # (pool, workers)


def run(body_address: int, block_address: int, threads: int) -> None:
    """Call ``body(block)`` on ``threads`` threads at once and wait for all of them.

    On PyTorch's OpenMP team when there is one (:func:`torch_openmp`); the calling thread is
    one of them. Safe to call from several Python threads at once (each gets its own team).
    """
    lib = torch_openmp()
    if lib is not None:
        lib.GOMP_parallel(body_address, block_address, threads, 0)
        return
    body = _BODY(body_address)
    if threads == 1:
        body(block_address)
        return
    global _POOL
    if _POOL is None or _POOL[1] < threads - 1:
        _POOL = (ThreadPoolExecutor(threads - 1, thread_name_prefix="upconv"), threads - 1)
    helpers = [_POOL[0].submit(body, block_address) for _ in range(threads - 1)]
    body(block_address)
    for f in helpers:
        f.result()


def backend() -> str:
    """Where :func:`run` runs bodies: the OpenMP runtime's path, or ``"python-threads"``."""
    lib = torch_openmp()
    return str(lib._name) if lib is not None else "python-threads"


__all__ = ["atomic_add", "backend", "block_from", "f32_ptr", "i64_ptr", "run", "torch_openmp"]
