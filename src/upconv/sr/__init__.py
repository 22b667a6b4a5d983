"""Super-resolution application: ESPCN trained as sub-pixel / resize conv, run as REVD2.

``load_pretrained("espcn-x3")`` gives a bundled model; ``.to_deconv("revd2")`` its edge form.
Files: :mod:`.upscale` (images at full depth, with metadata), :mod:`.video` (PyAV),
:mod:`.batch` (folder trees on Ray Data).
"""

from .models import ESPCN
from .pretrained import PRETRAINED, load_pretrained, save_model
from .tiling import upscale_tiled
from .video import VideoOptions, upscale_video

__all__ = ["ESPCN", "PRETRAINED", "VideoOptions", "load_pretrained", "save_model",
           "upscale_tiled", "upscale_video"]
