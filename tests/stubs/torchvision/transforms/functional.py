"""The two names spandrel imports from torchvision; neither is used by an upsampling model."""

import enum


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _missing(name: str):
    def fn(*args, **kwargs):
        raise NotImplementedError(
            f"torchvision.transforms.functional.{name} is a test-only stand-in (tests/stubs)")

    fn.__name__ = name
    return fn


rotate = _missing("rotate")
normalize = _missing("normalize")
