"""upconv.convert on whole PyTorch models: sites found, outputs equal, original untouched."""

from __future__ import annotations

import copy

import archs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import upconv
from upconv.convert import VerificationError, convert, plan
from upconv.sr import ESPCN

# A reference deconvolution algorithm: these tests check the conversion, not the fast engine
# ("auto", the default, is exercised by test_default_input_and_training_mode_kept).
REF = "stdd"


def _counts(report) -> dict[str, int]:
    kinds = [s.kind for s in report.converted]
    return {"sub-pixel": kinds.count("sub-pixel"), "resize": kinds.count("resize"),
            "left alone": len(report.skipped)}


def _other_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    _, c, h, w = shape
    return (2, c, h + 4, w + 8)  # multiples of 4 more, so the U-Net still pools evenly


@pytest.mark.parametrize("name", list(archs.ARCHITECTURES))
def test_architecture_sites_and_outputs(name):
    model, expected, shape = archs.build(name)
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(*shape)
    converted, report = convert(model, x, algorithm=REF)
    assert _counts(report) == expected, str(report)
    assert report.method == "real-tensor trace"
    assert type(converted) is type(model)  # the user's own class, methods and forward
    assert report.verified and report.max_rel_error < 1e-5
    deconvs = [m for m in converted.modules() if isinstance(m, upconv.Deconv2d)]
    assert len(deconvs) == len(report.converted)
    assert not any(isinstance(m, (nn.PixelShuffle, nn.Upsample)) for m in converted.modules()
                   if name.startswith(("espcn", "edsr")))
    # The conversion is exact for other input sizes too, not just the one it was checked on.
    x2 = torch.randn(*_other_shape(shape))
    with torch.no_grad():
        torch.testing.assert_close(converted(x2), model(x2), rtol=1e-4, atol=1e-5)
    # The original is untouched: same modules, same weights.
    assert not any(isinstance(m, upconv.Deconv2d) for m in model.modules())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_state_dict_round_trip():
    model, _, shape = archs.build("edsr-x4", seed=0)
    converted, _ = convert(model, algorithm=REF)
    fresh, _ = convert(archs.build("edsr-x4", seed=1)[0], algorithm=REF)
    x = torch.randn(*shape)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), converted(x))
        fresh.load_state_dict(converted.state_dict())
        torch.testing.assert_close(fresh(x), converted(x), rtol=0, atol=0)
    periodic = [k for k, v in converted.state_dict().items() if v.ndim == 3]
    assert periodic == ["tail.0.0.bias", "tail.0.2.bias"]


def test_unsupported_patterns_are_reported_not_crashed_on():
    model = archs.Mixed().eval()
    converted, report = convert(model, torch.randn(1, 1, 8, 8), algorithm=REF)
    reasons = [(s.path, s.reason) for s in report.skipped]
    # the grouped conv and the functional conv + shuffle convert: Mixed.forward rewritten by
    # torch.fx (now a GraphModule), a grouped Deconv2d, and one on the functional weights
    assert [(s.path, s.bias) for s in report.converted] == [("grouped", "periodic"),
                                                           ("fw_deconv", "periodic")]
    assert isinstance(converted, torch.fx.GraphModule) and converted.grouped.groups == 2
    assert reasons[0] == ("F.pixel_shuffle in Mixed",
                          "the conv output is used elsewhere too (not only by the shuffle)")
    assert reasons[1] == ("F.pixel_shuffle#2 in Mixed", reasons[0][1])
    assert "dilation (2, 2)" in reasons[2][1]
    assert "does not keep size" in reasons[3][1]
    assert "bilinear resize" in reasons[4][1]
    assert "non-integer scale: 8x8 → 12x12" in reasons[5][1]
    assert "non-integer scale: 12x12 → 16x16" in reasons[6][1]
    assert len(reasons) == 7
    text = str(report)
    assert "left alone sub-pixel at F.pixel_shuffle#3 in Mixed" in text
    assert "verified on input 1x1x8x8" in text


def test_data_dependent_control_flow_is_no_obstacle():
    """fx cannot trace this forward; the real-tensor trace can, and modules are swapped in
    place (Identity where the shuffle / resize was), so indices and keys stay put."""
    model = archs.Untraceable().eval()
    x = torch.randn(1, 1, 6, 5)
    converted, report = convert(model, x, algorithm=REF)
    assert [(s.path, s.kind) for s in report.converted] == [("up.0", "sub-pixel"),
                                                             ("up.4", "resize")]
    assert isinstance(converted.up[1], nn.Identity) and isinstance(converted.up[3], nn.Identity)
    assert [s.reason for s in report.skipped] == ["a pixel shuffle by 1 is the identity"]
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("upsampler", ["subpixel", "resize"])
def test_upconv_layers_are_sites(upsampler):
    model = ESPCN(scale=3, upsampler=upsampler).eval()
    converted, report = convert(model, torch.randn(1, 1, 5, 6), algorithm="revd")
    (site,) = report.converted
    assert site.path == "upsample" and site.algorithm == "revd"
    assert site.kind == ("sub-pixel" if upsampler == "subpixel" else "resize")
    assert isinstance(converted.upsample, upconv.Deconv2d)
    assert converted.upsample.algorithm == "revd"


def test_verification_failure_raises_with_errors(monkeypatch):
    real = plan.build_subpixel_deconv

    def wrong(*args, **kwargs):
        deconv = real(*args, **kwargs)
        with torch.no_grad():
            deconv.weight[0, 0, 0, 0] += 1.0
        return deconv

    monkeypatch.setattr(plan, "build_subpixel_deconv", wrong)
    model, _, shape = archs.build("espcn-x2")
    with pytest.raises(VerificationError, match=r"max abs error .* max rel error") as err:
        convert(model, torch.randn(*shape), algorithm=REF)
    assert err.value.report.max_abs_error > 1e-3
    _, report = convert(model, torch.randn(*shape), algorithm=REF, verify=False)
    assert not report.verified and "not verified" in str(report)


def test_default_input_and_training_mode_kept():
    model, _, _ = archs.build("espcn-x2")
    model.train()
    converted, report = convert(model)
    assert report.input_shape == (1, 1, 32, 32)
    assert converted.training and model.training


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"nn\.Module"):
        convert("model.onnx")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        convert(archs.ESPCN(2), algorithm="fast")
    with pytest.raises(ValueError, match="example_inputs"):
        convert(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="example_inputs"):
        convert(archs.ESPCN(2), example_inputs=3)


class _FunctionalSite(nn.Module):
    def __init__(self, cin, c, k, scale, bias, resize, functional):
        super().__init__()
        self.scale, self.resize, self.functional = scale, resize, functional
        cout = c if resize else c * scale[0] * scale[1]
        self.conv = nn.Conv2d(cin, cout, k, padding="same", bias=bias)

    def forward(self, x):
        if self.resize:
            up = F.interpolate(x, scale_factor=self.scale, mode="nearest")
            if self.functional:
                return F.conv2d(up, self.conv.weight, self.conv.bias, padding="same")
            return self.conv(up)
        y = (F.conv2d(x, self.conv.weight, self.conv.bias, padding="same") if self.functional
             else self.conv(x))
        return F.pixel_shuffle(y, self.scale[0])


@settings(max_examples=20, deadline=None)
@given(cin=st.integers(1, 3), c=st.integers(1, 3), kh=st.integers(1, 4), kw=st.integers(1, 4),
       rh=st.integers(1, 3), rw=st.integers(1, 3), bias=st.booleans(), resize=st.booleans(),
       functional=st.booleans(), h=st.integers(1, 5), w=st.integers(1, 5))
def test_any_site_geometry(cin, c, kh, kw, rh, rw, bias, resize, functional, h, w):
    if not resize:
        rh = rw = max(rh, 2)  # pixel shuffle has one factor; by 1 it is the identity
    elif (rh, rw) == (1, 1):
        rw = 2  # a resize to the same size is the identity, not a site
    model = _FunctionalSite(cin, c, (kh, kw), (rh, rw), bias, resize, functional).double().eval()
    x = torch.randn(2, cin, h, w, dtype=torch.float64)
    converted, report = convert(model, x, algorithm=REF)
    (site,) = report.converted
    assert site.scale == (rh, rw) and site.kernel_size == (kh, kw)
    assert report.max_rel_error < 1e-10
    x2 = torch.randn(1, cin, h + 2, w + 1, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x2), model(x2))


class _Branches(nn.Module):
    """Two sub-pixel branches (module and functional shuffle) and a resize branch, summed."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(2, 12, 3, padding=1), nn.PixelShuffle(2))
        self.b = nn.Conv2d(2, 12, 5, padding=2, bias=False)
        self.c = nn.Conv2d(2, 3, (3, 1), padding=(1, 0))

    def forward(self, x):
        up = F.interpolate(x, scale_factor=(2, 2), mode="nearest-exact")
        return self.a(x) + F.pixel_shuffle(self.b(x), 2) + self.c(up)


def test_multiple_branches_all_converted():
    model = _Branches().eval()
    converted, report = convert(model, torch.randn(1, 2, 5, 4), algorithm=REF)
    assert sorted((s.path, s.kind, s.deconv_kernel_size) for s in report.converted) == [
        ("a.0", "sub-pixel", (6, 6)), ("b", "sub-pixel", (10, 10)), ("c", "resize", (4, 2))]
    assert not report.skipped
    x = torch.randn(3, 2, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-4, atol=1e-5)


def test_batchnorm_statistics_untouched_in_train_mode():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4),
                          nn.Conv2d(4, 4, 3, padding=1), nn.PixelShuffle(2))
    model.train()
    converted, report = convert(model, torch.randn(2, 1, 6, 6) * 5 + 3, algorithm=REF)
    assert converted.training and len(report.converted) == 1
    torch.testing.assert_close(converted.state_dict()["1.running_mean"], torch.zeros(4))
    torch.testing.assert_close(model.state_dict()["1.running_mean"], torch.zeros(4))


def test_example_inputs_the_model_rejects():
    with pytest.raises(ValueError, match="example inputs of shape"):
        convert(archs.ESPCN(2), torch.randn(1, 3, 8, 8), algorithm=REF)


class _SubPixelThenResize(torch.nn.Module):
    """conv → F.pixel_shuffle → F.interpolate(nearest) → conv: two sites back to back."""

    def __init__(self) -> None:
        super().__init__()
        self.up1 = torch.nn.Conv2d(3, 4 * 4, 3, padding=1)
        self.up2 = torch.nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        y = torch.nn.functional.pixel_shuffle(self.up1(x), 2)
        y = torch.nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        return self.up2(y)


def test_resize_right_after_a_converted_subpixel_is_converted_too():
    """The node that replaces a sub-pixel chain keeps its recorded shape for later rewrites."""
    model = _SubPixelThenResize()
    converted, report = upconv.convert(model, torch.randn(1, 3, 6, 5), algorithm="stdd")
    assert sorted(site.kind for site in report.converted) == ["resize", "sub-pixel"]
    assert not report.skipped
    x = torch.randn(2, 3, 7, 4)
    torch.testing.assert_close(converted(x), model(x), rtol=1e-5, atol=1e-5)
