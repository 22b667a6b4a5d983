"""upconv.convert beyond strict pairs, and what it promises about the model it is given.

Ops between conv and shuffle / resize and conv that commute with them (activations, PReLU,
clamps, scalar arithmetic — learned scalars folded —, crops before a shuffle, a channel-group
mean), grouped convs; each checked against the trained form (float64, hypothesis) on the
example size and on another one. Then: the user's class, methods and forward survive; the
model passed in is never run or changed (attribute assignment in forward, in-place writes to
the input, random forwards, default arguments); state_dict and torch.export round trips.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import upconv
from upconv.convert.strided import StridedInputDeconv2d

REF = "stdd"


class Scale(nn.Module):
    """AWSRN's learned scalar."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([value]))

    def forward(self, x):
        return x * self.scale


class Shift(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.tensor([value]))

    def forward(self, x):
        return x + self.shift


class Clamp(nn.Module):
    def forward(self, x):
        return x.clamp(-0.3, 0.4)


class Crop(nn.Module):
    """Fixed crop of H and W, as F.pad with negative amounts (RealCUGAN) or a slice."""

    def __init__(self, crop, as_slice: bool) -> None:
        super().__init__()
        self.crop, self.as_slice = crop, as_slice

    def forward(self, x):
        top, bottom, left, right = self.crop
        if self.as_slice:
            return x[:, :, top:-bottom or None, left:-right or None]
        return F.pad(x, (-left, -right, -top, -bottom))


def _op(name: str, channels: int, r2: int):
    """The op between, for ``channels`` channels before the shuffle (``r2`` = r²)."""
    if name == "prelu-channel":  # equal slopes within each group of r² channels
        m = nn.PReLU(channels)
        with torch.no_grad():
            m.weight.copy_(torch.rand(channels // r2).repeat_interleave(r2))
        return m
    return {"relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.3),
            "prelu": lambda: nn.PReLU(init=0.2), "hardtanh": lambda: nn.Hardtanh(-0.5, 0.2),
            "clamp": Clamp, "scale": lambda: Scale(-1.7), "shift": lambda: Shift(0.6),
            "gelu": nn.GELU}[name]()


class SubPixelWith(nn.Module):
    """head conv → conv → [op] → PixelShuffle → tail add; the head keeps the forward busy."""

    def __init__(self, cin, c, k, r, op, bias, groups=1, padding="same", crop=None):
        super().__init__()
        self.head = nn.Conv2d(cin, cin, 1)
        self.conv = nn.Conv2d(cin, c * r * r, k, padding=padding, bias=bias, groups=groups)
        self.op = op
        self.crop = crop if crop is not None else nn.Identity()
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, x):
        return self.shuffle(self.op(self.crop(self.conv(self.head(x))))) + 1


class ResizeWith(nn.Module):
    """nn.Upsample (or F.interpolate in forward) → [op] → conv."""

    def __init__(self, cin, c, k, r, op, bias, functional=False, mode="nearest"):
        super().__init__()
        self.head = nn.Conv2d(cin, cin, 1)
        self.up = nn.Upsample(scale_factor=r, mode=mode)
        self.op, self.functional, self.r, self.mode = op, functional, r, mode
        self.conv = nn.Conv2d(cin, c, k, padding="same", bias=bias)

    def forward(self, x):
        h = self.head(x)
        up = F.interpolate(h, scale_factor=self.r, mode=self.mode) if self.functional \
            else self.up(h)
        return self.conv(self.op(up)) * 2


def _check(model, shape, other, expect_converted=1):
    x = torch.randn(*shape, dtype=torch.float64)
    converted, report = upconv.convert(model, x, algorithm=REF)
    assert len(report.converted) == expect_converted, str(report)
    assert not report.skipped, str(report)
    assert report.max_rel_error < 1e-10
    x2 = torch.randn(*other, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x2), model(x2), rtol=1e-10, atol=1e-10)
    return converted, report


OPS = ["relu", "leaky", "prelu", "prelu-channel", "hardtanh", "clamp", "scale", "shift", "gelu"]


@given(op=st.sampled_from(OPS), cin=st.integers(1, 3), c=st.integers(1, 3),
       k=st.integers(1, 4), r=st.integers(2, 3), bias=st.booleans(), h=st.integers(1, 5),
       w=st.integers(1, 5))
def test_ops_between_conv_and_shuffle_move_past_it(op, cin, c, k, r, bias, h, w):
    torch.manual_seed(0)
    model = SubPixelWith(cin, c, k, r, _op(op, c * r * r, r * r), bias).double().eval()
    converted, report = _check(model, (2, cin, h, w), (1, cin, h + 2, w + 1))
    assert isinstance(converted.conv, upconv.Deconv2d)
    assert isinstance(converted.shuffle, nn.Identity)
    if op in ("scale", "shift"):  # a learned scalar folds into the weights / bias
        assert isinstance(converted.op, nn.Identity) and "folded op" in report.converted[0].pattern
    elif op == "prelu-channel":  # one slope per output channel now
        assert converted.op.weight.shape == (c,)
    else:
        assert type(converted.op) is type(model.op)


@given(op=st.sampled_from(OPS), cin=st.integers(1, 3), c=st.integers(1, 3),
       k=st.integers(1, 4), r=st.integers(2, 3), bias=st.booleans(), functional=st.booleans(),
       exact=st.booleans(), h=st.integers(1, 5), w=st.integers(1, 5))
def test_ops_between_resize_and_conv_move_before_it(op, cin, c, k, r, bias, functional, exact,
                                                     h, w):
    torch.manual_seed(0)
    mode = "nearest-exact" if exact else "nearest"
    model = ResizeWith(cin, c, k, r, _op(op, cin, 1), bias, functional, mode).double().eval()
    converted, report = _check(model, (2, cin, h, w), (1, cin, h + 1, w + 3))
    if functional:  # the resize in forward stays; the deconvolution samples its output
        assert isinstance(converted.conv, StridedInputDeconv2d)
        assert "reads every" in report.converted[0].pattern
    else:
        assert isinstance(converted.up, nn.Identity)
        assert type(converted.conv) is upconv.Deconv2d


@given(k=st.integers(1, 4), r=st.integers(2, 3), valid=st.booleans(), as_slice=st.booleans(),
       crop=st.tuples(*[st.integers(0, 1)] * 4), h=st.integers(6, 8), w=st.integers(6, 8))
def test_crop_before_the_shuffle(k, r, valid, as_slice, crop, h, w):
    """RealCUGAN: a valid conv, F.pad(-1) on the conv output, then the shuffle."""
    torch.manual_seed(0)
    model = SubPixelWith(2, 2, k, r, nn.ReLU(), True, padding=0 if valid else "same",
                         crop=Crop(crop, as_slice)).double().eval()
    _check(model, (1, 2, h, w), (2, 2, h + 3, w + 1))


class ShapeCrop(nn.Module):
    def forward(self, x):
        return x[:, :, : x.shape[2] - 1]


def test_crop_whose_end_is_computed_from_the_shape_is_left_alone():
    """``x[:, :, :H-1]`` records as an absolute index: other sizes may crop differently."""
    model = SubPixelWith(2, 1, 3, 2, nn.ReLU(), True, crop=ShapeCrop()).eval()
    _, report = upconv.convert(model, torch.randn(1, 2, 5, 5), algorithm=REF)
    assert not report.converted and "absolute index 4" in report.skipped[0].reason


def test_per_channel_prelu_with_different_slopes_is_left_alone():
    model = SubPixelWith(2, 1, 3, 2, nn.PReLU(4), True).eval()
    with torch.no_grad():
        model.op.weight.copy_(torch.tensor([0.1, 0.2, 0.1, 0.1]))
    _, report = upconv.convert(model, torch.randn(1, 2, 5, 5), algorithm=REF)
    (skip,) = report.skipped
    assert not report.converted and skip.limitation
    assert "4 slopes" in skip.reason and "differ" in skip.reason


class PerChannelGain(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.rand(1, n, 1, 1) + 0.5)

    def forward(self, x):
        return x * self.gain


def test_non_commuting_ops_are_left_alone_with_the_reason():
    model = SubPixelWith(2, 1, 3, 2, PerChannelGain(4), True).eval()
    _, report = upconv.convert(model, torch.randn(1, 2, 5, 5), algorithm=REF)
    assert not report.converted
    assert report.skipped[0].reason == ("mul in op between the conv conv and the shuffle: "
                                        "mul with a second tensor of shape (1, 4, 1, 1)")
    # before a nearest resize a per-channel gain commutes (each channel is only repeated)
    model = ResizeWith(2, 1, 3, 2, PerChannelGain(2), True).double().eval()
    _check(model, (1, 2, 4, 5), (1, 2, 6, 3))


@pytest.mark.parametrize("kind", ["sub-pixel", "resize"])
def test_grouped_convolutions(kind):
    """CARN-M's grouped sub-pixel conv: a grouped Deconv2d (conv_transpose2d's layout)."""
    torch.manual_seed(0)
    if kind == "sub-pixel":
        model = SubPixelWith(4, 4, 3, 2, nn.ReLU(), True, groups=2).double().eval()
    else:
        model = ResizeWith(4, 4, 3, 2, nn.ReLU(), True).double().eval()
        model.conv = nn.Conv2d(4, 4, 3, padding=1, groups=2).double()
    converted, _ = _check(model, (1, 4, 5, 6), (2, 4, 3, 7))
    assert converted.conv.groups == 2 and converted.conv.weight.shape[:2] == (4, 2)


@given(g=st.integers(1, 3), a=st.integers(1, 2), b=st.integers(1, 2), k=st.integers(1, 3),
       r=st.integers(2, 3), bias=st.booleans(), resize=st.booleans(), h=st.integers(1, 4),
       w=st.integers(1, 4))
def test_grouped_convolutions_any_geometry(g, a, b, k, r, bias, resize, h, w):
    torch.manual_seed(0)
    if resize:
        model = ResizeWith(g * a, g * b, k, r, nn.LeakyReLU(0.1), bias).double().eval()
        model.conv = nn.Conv2d(g * a, g * b, k, padding="same", bias=bias, groups=g).double()
    else:
        model = SubPixelWith(g * a, g * b, k, r, nn.LeakyReLU(0.1), bias, groups=g)
        model = model.double().eval()
    converted, _ = _check(model, (2, g * a, h, w), (1, g * a, h + 2, w + 1))
    assert converted.conv.groups == g


def test_grouped_conv_whose_groups_straddle_output_channels_is_left_alone():
    """groups=4 over 8 = 2·r² channels: a group's channels feed half an output channel."""
    model = SubPixelWith(4, 2, 3, 2, nn.ReLU(), True, groups=4).eval()
    _, report = upconv.convert(model, torch.randn(1, 4, 5, 5), algorithm=REF)
    assert not report.converted
    assert "groups=4 does not divide the 2 output channels" in report.skipped[0].reason


class GeoEnsemble(nn.Module):
    """MoSR's GPS: conv to 8 groups of C·r² channels, their mean, then the shuffle."""

    def __init__(self):
        super().__init__()
        self.in_to_k = nn.Conv2d(3, 8 * 3 * 4, 3, padding=1)
        self.ps = nn.PixelShuffle(2)

    def forward(self, x):
        y = self.in_to_k(x)
        return self.ps(y.reshape(y.shape[0], 8, -1, y.shape[-2], y.shape[-1]).mean(1))


def test_group_mean_before_the_shuffle_folds_into_the_weights():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), GeoEnsemble()).double().eval()
    converted, report = _check(model, (1, 3, 4, 5), (2, 3, 5, 3))
    assert isinstance(converted[1], upconv.Deconv2d)  # the whole GPS block replaced
    assert "replaced as a whole" in report.converted[0].pattern


# --- what convert promises about the model and inputs it is given --------------------------


class Fussy(nn.Module):
    """Everything spandrel's models do to a naive converter: attribute assignment in forward
    (EDSR/RCAN/SwinIR's mean), in-place writes to the input (RCAN), noise (AuraSR), default
    arguments (MMRealSR), a data-dependent branch, a functional resize, an extra method."""

    def __init__(self):
        super().__init__()
        self.mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
        self.calls = 0
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(8, 8 * 4, 3, padding=1), nn.PixelShuffle(2),
                                nn.LeakyReLU(0.2))
        self.conv_up = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x, strength=1.0, options=(None, None)):
        self.calls += 1
        self.mean = self.mean.type_as(x)
        x *= 2.0
        x = x - self.mean
        h = self.head(x)
        if h.abs().mean() > 1e9 or options[0] is not None:
            h = h * 0
        h = h + torch.randn_like(h) * 0.01 * strength
        h = self.up(h)
        out = self.conv_up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return out, h.mean()

    def upscale(self, x):
        return self(x)[0]


def test_the_model_passed_in_is_never_run_or_changed():
    torch.manual_seed(0)
    model = Fussy().eval()
    state = copy.deepcopy(model.state_dict())
    mean = model.mean
    x = torch.rand(1, 3, 6, 7)
    x_before = x.clone()
    rng = torch.get_rng_state()
    converted, report = upconv.convert(model, x, algorithm=REF)
    # converted: a sub-pixel module swap, and the functional resize
    assert [s.kind for s in report.converted] == ["sub-pixel", "resize"], str(report)
    assert report.max_rel_error < 1e-5  # the noise was drawn the same in both runs
    # the original: never called, same tensors, no hooks left, no Proxy anywhere
    assert model.calls == 0 and model.mean is mean
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch.equal(x, x_before)
    assert torch.equal(torch.get_rng_state(), rng)
    for m in [*model.modules(), *converted.modules()]:
        assert not any(isinstance(v, torch.fx.Proxy) for v in vars(m).values())
    # the converted model: the user's class, methods, forward and default arguments
    assert type(converted) is Fussy and converted.calls == 0
    x2 = torch.rand(2, 3, 5, 9)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        want = model.upscale(x2.clone())
        torch.manual_seed(3)
        got = converted.upscale(x2.clone())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_state_dict_and_torch_export_round_trips():
    torch.manual_seed(0)
    model = ResizeWith(3, 3, 3, 2, nn.ReLU(), True, functional=True).eval()
    model.tail = SubPixelWith(3, 1, 3, 2, nn.ReLU(), True)
    seq = nn.Sequential(model, model.tail).eval()
    x = torch.randn(1, 3, 5, 6)
    converted, report = upconv.convert(seq, x, algorithm=REF)
    assert len(report.converted) == 2
    # state_dict into another conversion of the same architecture
    torch.manual_seed(1)
    other = copy.deepcopy(seq)
    for p in other.parameters():
        p.data.normal_()
    fresh, _ = upconv.convert(other, x, algorithm=REF)
    buf = io.BytesIO()
    torch.save(converted.state_dict(), buf)
    fresh.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    x2 = torch.randn(2, 3, 7, 4)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x2), converted(x2), rtol=0, atol=0)
    # torch.export: standard ops (ConvTranspose + periodic bias, strided slice), saved, loaded
    program = torch.export.export(converted, (x,))
    buf = io.BytesIO()
    torch.export.save(program, buf)
    loaded = torch.export.load(io.BytesIO(buf.getvalue()))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module()(x), converted(x), rtol=1e-5, atol=1e-6)


class EinopsUp(nn.Module):
    """A sub-pixel upsampler whose shuffle is an einops pattern (module or function call)."""

    def __init__(self, pattern: str, functional: bool = False):
        super().__init__()
        from einops.layers.torch import Rearrange

        self.head = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 2 * 4, 3, padding=1)
        self.pattern, self.functional = pattern, functional
        self.shuffle = Rearrange(pattern, h2=2, w2=2)

    def forward(self, x):
        import einops

        y = torch.relu(self.conv(self.head(x)))
        if self.functional:
            return einops.rearrange(y, self.pattern, h2=2, w2=2) - 1
        return self.shuffle(y) - 1


@pytest.mark.parametrize("pattern", [
    "b (c h2 w2) h w -> b c (h h2) (w w2)",  # PyTorch's pixel shuffle order (CRD)
    "b (h2 w2 c) h w -> b c (h h2) (w w2)",  # depth first (DCR, TensorFlow's depth_to_space)
    "b (c w2 h2) h w -> b c (h h2) (w w2)",  # any other channel order
])
def test_einops_rearrange_pixel_shuffles_convert(pattern):
    torch.manual_seed(0)
    model = EinopsUp(pattern).double().eval()
    converted, report = _check(model, (1, 3, 4, 5), (2, 3, 3, 6))
    assert isinstance(converted.shuffle, nn.Identity)
    text = report.converted[0].pattern
    assert text.startswith("conv → shuffle") and text.endswith("(through relu)")
    # PyTorch's own order needs no permutation; the others are folded into the conv
    assert ("channel order folded" in text) == (not pattern.startswith("b (c h2 w2)"))


def test_a_rearrange_that_is_no_pixel_shuffle_is_no_site():
    model = EinopsUp("b (c h2 w2) h w -> b c (h2 h) (w2 w)").eval()  # blocks, not interleaved
    _, report = upconv.convert(model, torch.randn(1, 3, 4, 5), algorithm=REF)
    assert not report.converted and not report.skipped


def test_functional_einops_shuffle_is_reported():
    model = EinopsUp("b (c h2 w2) h w -> b c (h h2) (w w2)", functional=True).eval()
    _, report = upconv.convert(model, torch.randn(1, 3, 4, 5), algorithm=REF)
    (skip,) = report.skipped
    assert not report.converted and skip.limitation, str(report)
    assert skip.path == "conv → reshape-permute shuffle in EinopsUp (through relu)"
    assert "torch.fx cannot trace that forward" in skip.reason


class SharedShuffle(nn.Module):
    """One nn.PixelShuffle called after two convs, and (``odd``) once more on a non-conv."""

    def __init__(self, odd: bool):
        super().__init__()
        self.a = nn.Conv2d(2, 8, 3, padding=1)
        self.b = nn.Conv2d(2, 8, 3, padding=1)
        self.ps = nn.PixelShuffle(2)
        self.odd = odd

    def forward(self, x):
        y = self.ps(self.a(x)) + self.ps(self.b(x))
        return y + self.ps(x.repeat(1, 4, 1, 1)) if self.odd else y


@pytest.mark.parametrize("odd", [False, True])
def test_a_shuffle_module_shared_by_several_calls(odd):
    """Identity only when every call follows a converted conv; else the forward is
    rewritten (torch.fx) and the other call keeps its shuffle."""
    torch.manual_seed(0)
    model = SharedShuffle(odd).double().eval()
    converted, report = upconv.convert(model, torch.randn(1, 2, 4, 5, dtype=torch.float64),
                                       algorithm=REF)
    assert [s.path for s in report.converted] == ["a", "b"]
    assert [s.reason for s in report.skipped] == (["its input is repeat in SharedShuffle (not "
                                                   "a convolution)"] if odd else [])
    assert isinstance(converted.ps, nn.Identity) != odd
    x2 = torch.randn(2, 2, 3, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x2), model(x2))
