"""Super-resolution / decoder architectures for the conversion tests, small and random.

Each builder returns ``(model, expected)``: ``expected`` maps a site kind (``"sub-pixel"``,
``"resize"``) to how many sites of that kind the converter must convert, and
``"left alone"`` to how many candidates it must report untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ESPCN(nn.Module):
    """PyTorch examples' super_resolution net: conv 5/3/3 + sub-pixel conv 3 → r²."""

    def __init__(self, scale: int, channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 5, padding=2)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv3 = nn.Conv2d(width, width // 2, 3, padding=1)
        self.conv4 = nn.Conv2d(width // 2, channels * scale**2, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(True),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.1 * self.body(x)


class Upsampler(nn.Sequential):
    """EDSR's upsampler: ×2^n as n (conv → 4C, shuffle 2) stages, ×3 as one stage."""

    def __init__(self, scale: int, width: int, bias: bool = True) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(width, 4 * width, 3, padding=1, bias=bias),
                           nn.PixelShuffle(2)]
        else:
            layers += [nn.Conv2d(width, scale * scale * width, 3, padding=1, bias=bias),
                       nn.PixelShuffle(scale)]
        super().__init__(*layers)


class EDSR(nn.Module):
    """head conv → residual blocks (+ long skip) → Upsampler → tail conv."""

    def __init__(self, scale: int, width: int = 8, blocks: int = 2) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(blocks)],
                                  nn.Conv2d(width, width, 3, padding=1))
        self.tail = nn.Sequential(Upsampler(scale, width, bias=scale != 3),
                                  nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(x)
        return self.tail(x + self.body(x))


class DenseBlock(nn.Module):
    """A small residual dense block (ESRGAN's RDB, 3 convs)."""

    def __init__(self, width: int, growth: int = 4) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(width + i * growth, growth if i < 2 else width, 3, padding=1)
            for i in range(3))

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 2:
                feats.append(F.leaky_relu(out, 0.2))
        return x + 0.2 * out


class RRDBNet(nn.Module):
    """ESRGAN layout: RRDB trunk, then two (nearest ×2 → conv) stages (functional interpolate)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(DenseBlock(width), DenseBlock(width))
        self.conv_body = nn.Conv2d(width, width, 3, padding=1)
        self.conv_up1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv_up2 = nn.Conv2d(width, width, 3, padding=1)
        self.conv_hr = nn.Conv2d(width, width, 3, padding=1)
        self.conv_last = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")),
                            0.2)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")),
                            0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact net: conv/PReLU body → conv to 3r² → shuffle, + nearest(x) skip."""

    def __init__(self, scale: int = 4, width: int = 8, convs: int = 3) -> None:
        super().__init__()
        self.scale = scale
        body: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1), nn.PReLU(width)]
        for _ in range(convs):
            body += [nn.Conv2d(width, width, 3, 1, 1), nn.PReLU(width)]
        body.append(nn.Conv2d(width, 3 * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(body)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


class UNetDecoder(nn.Module):
    """Two-level U-Net: nn.Upsample + conv, and F.interpolate(size=skip size) + conv."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(3, width, 3, padding=1)
        self.enc2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.mid = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                 nn.Conv2d(2 * width, 2 * width, 3, padding=1))
        self.dec2 = nn.Conv2d(4 * width, width, 3, padding=1)
        self.up1_conv = nn.Conv2d(width, width, 3, padding="same", bias=False)
        self.dec1 = nn.Conv2d(2 * width, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = torch.relu(self.enc1(x))
        e2 = torch.relu(self.enc2(F.max_pool2d(e1, 2)))
        m = torch.relu(self.mid(F.max_pool2d(e2, 2)))
        d2 = torch.relu(self.dec2(torch.cat([self.up2(m), e2], 1)))
        up = F.interpolate(d2, size=e1.shape[-2:], mode="nearest-exact")
        d1 = torch.relu(self.up1_conv(up))
        return self.dec1(torch.cat([d1, e1], 1))


class FSRCNN(nn.Module):
    """FSRCNN: extraction, shrink, mapping, expand, native ConvTranspose2d (stays as it is)."""

    def __init__(self, scale: int = 2, d: int = 12, s: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d),
                                      nn.Conv2d(d, s, 1), nn.PReLU(s),
                                      nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s),
                                      nn.Conv2d(s, d, 1), nn.PReLU(d))
        self.deconv = nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4,
                                         output_padding=scale - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.deconv(self.features(x))


class Mixed(nn.Module):
    """Every kind of candidate that must be left alone, plus one biased functional site."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, width, 3, padding=1)
        self.shared = nn.Conv2d(width, 4 * width, 3, padding=1)  # also used elsewhere
        self.dilated = nn.Conv2d(width, 4 * width, 3, padding=2, dilation=2)
        self.grouped = nn.Conv2d(width, 4 * width, 3, padding=1, groups=2)
        self.valid = nn.Conv2d(width, width, 3, padding=0)  # does not keep the size
        self.after_bilinear = nn.Conv2d(width, width, 3, padding=1)
        self.after_fractional = nn.Conv2d(width, width, 3, padding=1)
        self.fw = nn.Parameter(torch.randn(4 * width, width, 3, 3) * 0.1)
        self.fb = nn.Parameter(torch.randn(4 * width) * 0.1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        s = self.shared(h)
        a = F.pixel_shuffle(s, 2) + F.pixel_shuffle(s.relu(), 2)
        b = F.pixel_shuffle(self.dilated(h), 2)
        c = F.pixel_shuffle(self.grouped(h), 2)
        d = F.pad(self.valid(F.interpolate(h, scale_factor=2, mode="nearest")), (1, 1, 1, 1))
        e = self.after_bilinear(F.interpolate(h, scale_factor=2, mode="bilinear"))
        f = self.after_fractional(F.interpolate(h, scale_factor=1.5, mode="nearest"))
        f = F.interpolate(f, size=e.shape[-2:], mode="nearest")
        g = F.pixel_shuffle(F.conv2d(h, self.fw, self.fb, padding=1), 2)
        return (a + b + c).sum(1, keepdim=True) + d + e + f + g


class Untraceable(nn.Module):
    """Data-dependent control flow (fx cannot trace it) around a Sequential upsampler."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, 8, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(8, 8 * 4, 3, padding=1), nn.PixelShuffle(2),
                                nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
                                nn.Conv2d(8, 1, 3, padding=1), nn.PixelShuffle(1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        if h.mean() > 0:
            h = h * 2
        return self.up(h)


def _espcn(scale: int) -> tuple[nn.Module, dict[str, int]]:
    return ESPCN(scale), {"sub-pixel": 1, "resize": 0, "left alone": 0}


ARCHITECTURES = {
    "espcn-x2": (lambda: _espcn(2), (1, 1, 8, 9)),
    "espcn-x3": (lambda: _espcn(3), (1, 1, 8, 9)),
    "espcn-x4": (lambda: _espcn(4), (1, 1, 8, 9)),
    "edsr-x2": (lambda: (EDSR(2), {"sub-pixel": 1, "resize": 0, "left alone": 0}), (1, 3, 8, 8)),
    "edsr-x3": (lambda: (EDSR(3), {"sub-pixel": 1, "resize": 0, "left alone": 0}), (1, 3, 8, 8)),
    "edsr-x4": (lambda: (EDSR(4), {"sub-pixel": 2, "resize": 0, "left alone": 0}), (1, 3, 8, 8)),
    "rrdb-x4": (lambda: (RRDBNet(), {"sub-pixel": 0, "resize": 2, "left alone": 0}),
                (1, 3, 6, 7)),
    "srvgg-x4": (lambda: (SRVGGNetCompact(4), {"sub-pixel": 1, "resize": 0, "left alone": 1}),
                 (1, 3, 6, 7)),
    "unet": (lambda: (UNetDecoder(), {"sub-pixel": 0, "resize": 2, "left alone": 0}),
             (1, 3, 8, 12)),
    "fsrcnn-x2": (lambda: (FSRCNN(2), {"sub-pixel": 0, "resize": 0, "left alone": 1}),
                  (1, 1, 7, 8)),
}


# Where the ONNX-level conversion of the original export finds fewer sites than the PyTorch
# path:
# the U-Net's F.interpolate(size=..., mode="nearest-exact") exports (dynamo exporter) as a
# GatherND, not a Resize, so only its nn.Upsample site converts.
ONNX_EXPECTED = {"unet": {"sub-pixel": 0, "resize": 1, "left alone": 0},
                 "fsrcnn-x2": {"sub-pixel": 0, "resize": 0, "left alone": 0}}


def build(name: str, seed: int = 0) -> tuple[nn.Module, dict[str, int], tuple[int, ...]]:
    """``(model in eval mode, expected counts, input shape)`` with seeded random weights."""
    torch.manual_seed(seed)
    make, shape = ARCHITECTURES[name]
    model, expected = make()
    return model.eval(), expected, shape
