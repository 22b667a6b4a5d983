import torch

import upconv


def test_public_api_names():
    assert upconv.ALGORITHMS == ("stdd", "strd", "revd", "revd2", "tdc")
    for name in ("weight_shuffle", "bias_shuffle", "weight_convolution", "deconv2d",
                 "SubPixelConv2d", "ResizeConv2d", "Deconv2d"):
        assert hasattr(upconv, name)


def test_subpixel_roundtrip_small():
    layer = upconv.SubPixelConv2d(4, 2, 3, 2).double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(layer.to_deconv()(x), layer(x))
