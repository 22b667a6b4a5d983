"""Image metadata that survives upscaling: ICC profile, dpi, EXIF, text; EXIF orientation.

The orientation an image carries (EXIF tag 274) is *applied* to the pixels when it is read
and the output says ``orientation = 1``: the output shows as the input did in every viewer,
whether or not the viewer honours the tag. What still applies after upscaling is kept:

* the ICC profile (when it describes the output's colour space: RGB or grey),
* the resolution in dots per inch (kept as it is: the output prints ``r`` times larger),
* EXIF: the descriptive IFD0 tags (make, model, date, artist, copyright, software,
  description), the Exif sub-IFD (camera settings; pixel dimensions updated) and GPS,
* text: PNG text chunks, the JPEG comment, the XMP packet (PNG ``XML:com.adobe.xmp``).

Dropped: EXIF thumbnails and layout tags (they describe the old file), and XMP packets of
images whose orientation was applied (XMP may repeat the old orientation).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageCms

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
PIXEL_X_DIMENSION = 0xA002
PIXEL_Y_DIMENSION = 0xA003

#: IFD0 tags that describe the picture rather than the file's layout: kept in every format.
DESCRIPTIVE_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 305: "Software",
                    306: "DateTime", 315: "Artist", 33432: "Copyright"}

#: Text keys that hold XMP packets.
XMP_KEYS = ("XML:com.adobe.xmp", "xmp")


@dataclass
class ImageMeta:
    """What an image says about itself, made ready for the upscaled output.

    ``orientation``: the EXIF orientation the input had (already applied to the pixels);
    ``exif``: descriptive tags with ``orientation = 1`` (``None`` when the input had none).
    """

    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: Image.Exif | None = None
    text: dict[str, str] = field(default_factory=dict)
    orientation: int = 1


def read_meta(img: Image.Image) -> ImageMeta:
    """The metadata of a Pillow image (any format Pillow reads)."""
    raw = img.getexif()
    orientation = int(raw.get(ORIENTATION, 1) or 1)
    if orientation not in range(1, 9):
        orientation = 1
    text = {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
    if isinstance(img.info.get("comment"), bytes | str) and img.info["comment"]:
        comment = img.info["comment"]
        text["Comment"] = comment.decode("latin-1") if isinstance(comment, bytes) else comment
    xmp = img.info.get("xmp")
    if isinstance(xmp, bytes) and xmp and XMP_KEYS[0] not in text:  # JPEG, WebP, TIFF
        text[XMP_KEYS[0]] = xmp.decode("utf-8", errors="replace")
    if orientation != 1:
        text = {k: v for k, v in text.items() if k not in XMP_KEYS}
    dpi = img.info.get("dpi")
    return ImageMeta(
        icc_profile=img.info.get("icc_profile") or None,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi and all(dpi) else None,
        exif=clean_exif(raw) if len(raw) else None,
        text=text,
        orientation=orientation,
    )


def clean_exif(raw: Image.Exif) -> Image.Exif | None:
    """A new EXIF block with ``raw``'s descriptive tags, Exif and GPS sub-IFDs, and
    ``orientation = 1``; ``None`` when nothing descriptive is left."""
    out = Image.Exif()
    for tag in DESCRIPTIVE_TAGS:
        if tag in raw:
            out[tag] = raw[tag]
    for ifd in (EXIF_IFD, GPS_IFD):
        sub = raw.get_ifd(ifd)
        if sub:
            out.get_ifd(ifd).update(sub)
    if not len(out) and not any(out.get_ifd(i) for i in (EXIF_IFD, GPS_IFD)):
        return None
    out[ORIENTATION] = 1
    return out


def exif_for_size(exif: Image.Exif | None, size: tuple[int, int]) -> Image.Exif | None:
    """``exif`` with the Exif sub-IFD's pixel dimensions set to ``size = (width, height)``."""
    if exif is None:
        return None
    sub = exif.get_ifd(EXIF_IFD)
    if PIXEL_X_DIMENSION in sub or PIXEL_Y_DIMENSION in sub:
        sub[PIXEL_X_DIMENSION], sub[PIXEL_Y_DIMENSION] = size
    return exif


def has_sub_ifds(exif: Image.Exif | None) -> bool:
    """Whether ``exif`` has Exif or GPS sub-IFD entries (which TIFF outputs cannot carry)."""
    return exif is not None and any(exif.get_ifd(i) for i in (EXIF_IFD, GPS_IFD))


def icc_colour_space(icc: bytes) -> str | None:
    """The data colour space an ICC profile describes (``"RGB"``, ``"GRAY"``, ``"CMYK"``, ...),
    or ``None`` when Pillow's LittleCMS cannot read the profile."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile
    except (OSError, ImageCms.PyCMSError, ValueError):
        return None
    return str(profile.xcolor_space).strip() or None


def icc_fits(icc: bytes | None, channels: int) -> bool:
    """Whether ``icc`` describes pixels of ``channels`` colour channels (grey 1, RGB 3)."""
    if icc is None:
        return False
    want = "GRAY" if channels == 1 else "RGB"
    return icc_colour_space(icc) == want


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``(H, W, ...)`` pixels as displayed for an EXIF ``orientation`` (1..8), as
    ``PIL.ImageOps.exif_transpose`` does for Pillow images."""
    flips = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],                      # mirrored left-right
        3: lambda a: a[::-1, ::-1],                   # rotated 180°
        4: lambda a: a[::-1],                         # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),                # transposed
        6: lambda a: np.rot90(a, -1),                 # shown rotated 90° clockwise
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),    # transversed
        8: lambda a: np.rot90(a, 1),                  # shown rotated 90° counter-clockwise
    }
    if orientation not in flips:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    return np.ascontiguousarray(flips[orientation](pixels))
