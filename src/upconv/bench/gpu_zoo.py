"""The GPU benchmark layers: G1–G4 (full-HD and 4K upsampling heads) plus the paper's L1–L6.

:func:`gpu_tensors` builds a layer's input and weights on a device in a dtype: the trained
weights are rounded to the dtype first and the deconvolution weights derived from the rounded
ones (exactly for the weight and bias shuffles; the weight convolution sums in float32 and
rounds once), so every implementation computes the same function up to its arithmetic.
"""

from __future__ import annotations

import torch

from ..transforms import bias_shuffle, weight_convolution, weight_shuffle
from .zoo import LAYERS, Layer, LayerTensors, by_id, make_tensors

GPU_ONLY = by_id(
    Layer("G1", "ESPCN ×2 to 4K", 32, 1, 2, 1, 1080, 1920),
    Layer("G2", "Real-ESRGAN-style ×4 head", 64, 3, 4, 1, 540, 960),
    Layer("G3", "EDSR ×2 upsampler", 64, 64, 2, 1, 540, 960),
    Layer("G4", "video, batch 8, ×2", 16, 3, 2, 8, 540, 960),
)
#: Every layer of the GPU suite, the GPU-sized ones first.
GPU_LAYERS: dict[str, Layer] = {**GPU_ONLY, **LAYERS}
#: The layers whose D-SP fp16 target is 2× (G3, compute-bound: 1.2×; L1–L6: 1×).
MEMORY_BOUND_G = ("G1", "G2", "G4")


def gpu_tensors(layer: Layer, dtype: torch.dtype, device: torch.device | str,
                seed: int = 0) -> LayerTensors:
    """``layer``'s tensors (:func:`~upconv.bench.zoo.make_tensors`) in ``dtype`` on ``device``."""
    t = make_tensors(layer, seed)

    def put(v: torch.Tensor) -> torch.Tensor:
        return v.to(device=device, dtype=dtype)

    x, w_sp, b_sp, w_nn, b_nn = (put(v) for v in (t.x, t.w_sp, t.b_sp, t.w_nn, t.b_nn))
    return LayerTensors(
        x=x, w_sp=w_sp, b_sp=b_sp, w_nn=w_nn, b_nn=b_nn,
        wd_sp=weight_shuffle(w_sp, layer.r), bd_sp=bias_shuffle(b_sp, layer.r),
        wd_nn=put(weight_convolution(w_nn.float(), layer.r)),
        geo_sp=t.geo_sp, geo_nn=t.geo_nn)


def io_bytes(layer: Layer, dtype: torch.dtype) -> int:
    """Bytes that must cross DRAM at least once: the input read and the output written."""
    item = torch.empty((), dtype=dtype).element_size()
    return item * layer.n * layer.h * layer.w * (layer.cin + layer.c * layer.r**2)
