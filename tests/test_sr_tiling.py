"""Halo tiling: bit-identical to untiled for every tile size, model variant and algorithm."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from upconv.sr import ESPCN
from upconv.sr.tiling import MIN_TILE, tile_spans, upscale_tiled

MODELS = {}


def _model(scale: int, upsampler: str, algorithm: str) -> torch.nn.Module:
    key = (scale, upsampler, algorithm)
    if key not in MODELS:
        torch.manual_seed(scale)
        net = ESPCN(scale, upsampler).eval()
        MODELS[key] = net if algorithm == "conv" else net.to_deconv(algorithm)
    return MODELS[key]


@given(length=st.integers(1, 200), tile=st.integers(1, 70), halo=st.integers(0, 7))
@settings(max_examples=60, deadline=None)
def test_tile_spans_cover_without_overlap(length, tile, halo):
    spans = list(tile_spans(length, tile, halo))
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # contiguous, no overlap
    sizes = [stop - start for start, stop, *_ in spans]
    assert len(spans) == -(-length // tile)
    assert max(sizes) <= tile and max(sizes) - min(sizes) <= 1  # no sliver at the end
    for start, stop, in_start, in_stop in spans:
        assert in_start == max(0, start - halo) and in_stop == min(length, stop + halo)


@given(
    h=st.one_of(st.integers(1, 3), st.integers(1, 70)), w=st.integers(1, 70),
    tile=st.integers(MIN_TILE, 40),
    scale=st.sampled_from([2, 3]), upsampler=st.sampled_from(["subpixel", "resize"]),
    algorithm=st.sampled_from(["conv", "revd2", "stdd", "tdc"]),
)
@settings(max_examples=25, deadline=None)
def test_tiled_is_bit_identical_to_untiled(h, w, tile, scale, upsampler, algorithm):
    net = _model(scale, upsampler, algorithm)
    x = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
    whole = upscale_tiled(net, x, None)
    tiled = upscale_tiled(net, x, tile)
    assert tiled.shape == (1, 1, scale * h, scale * w)
    assert torch.equal(tiled, whole)


def test_untiled_matches_the_model():
    net = _model(3, "subpixel", "conv")
    x = torch.rand(2, 1, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(upscale_tiled(net, x, None), net(x))


class _ShortHalo(torch.nn.Module):
    """The same model, claiming a receptive radius one pixel too small."""

    def __init__(self, net: ESPCN) -> None:
        super().__init__()
        self.net, self.scale, self.receptive_radius = net, net.scale, net.receptive_radius - 1

    def forward(self, x):
        return self.net(x)


def test_a_halo_short_of_the_receptive_field_is_detected():
    net = _model(2, "subpixel", "conv")
    x = torch.rand(1, 1, 50, 50)
    tiled = upscale_tiled(_ShortHalo(net), x, MIN_TILE)
    assert (tiled - upscale_tiled(net, x, None)).abs().max() > 1e-4


def test_bad_tiles():
    net = _model(2, "subpixel", "conv")
    with pytest.raises(ValueError, match="at least 16"):
        upscale_tiled(net, torch.rand(1, 1, 8, 8), 4)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        upscale_tiled(net, torch.rand(8, 8), 4)


class _Recorder(torch.nn.Module):
    """Wraps a model and records the input size of every call."""

    def __init__(self, net: ESPCN) -> None:
        super().__init__()
        self.net, self.scale, self.receptive_radius = net, net.scale, net.receptive_radius
        self.calls: list[tuple[int, int]] = []

    def forward(self, x):
        self.calls.append(tuple(x.shape[-2:]))
        return self.net(x)


def test_each_call_is_bounded_by_the_tile_plus_halo():
    net = _Recorder(_model(2, "subpixel", "conv"))
    upscale_tiled(net, torch.rand(1, 1, 150, 97), 32)
    bound = 32 + 2 * net.receptive_radius
    assert len(net.calls) == 5 * 4
    assert max(h for h, _ in net.calls) <= bound and max(w for _, w in net.calls) <= bound


def test_unknown_receptive_radius_runs_in_one_piece():
    """A network whose receptive radius is unknown (a checkpoint's transformer) is not tiled:
    one call on the whole image, so the output cannot depend on the tile size."""
    from torch import nn

    from upconv.sr.tiling import upscale_tiled

    class Net(nn.Module):
        scale, receptive_radius = 2, None

        def __init__(self):
            super().__init__()
            self.calls = []

        def forward(self, x):
            self.calls.append(tuple(x.shape))
            return x.repeat_interleave(2, -1).repeat_interleave(2, -2)

    net = Net()
    x = torch.rand(1, 3, 70, 90)
    y = upscale_tiled(net, x, tile=32)
    assert net.calls == [(1, 3, 70, 90)] and tuple(y.shape) == (1, 3, 140, 180)
