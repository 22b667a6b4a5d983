"""The host-cost breakdown of the GPU suite (:mod:`upconv.bench.gpu_host`) runs its every
case; under the interpreter the figures mean nothing, only that the code path works."""

from __future__ import annotations

import torch

from upconv.bench.gpu_host import host_costs
from upconv.bench.zoo import Layer


def test_host_costs_time_every_case():
    rows = host_costs(Layer("T", "tiny", 4, 1, 2, 1, 8, 16), torch.float32,
                      torch.device("cpu"), calls=2, blocks=1)
    assert [r["case"] for r in rows] == [
        "cuDNN conv + pixel_shuffle", "one elementwise op (y.add_(0))", "upconv.deconv2d",
        "Deconv2d module", "launch_all (prepared launch)",
        "Triton launch (kernel[grid](...), arguments ready)",
        "upconv.deconv2d, launch stubbed (upconv's own Python)"]
    assert all(r["us_per_call"] > 0 for r in rows)


def test_host_costs_say_why_not():
    layer = Layer("T", "tiny", 4, 1, 2, 1, 8, 16)
    assert "dtype" in host_costs(layer, torch.float64, torch.device("cpu"))
