"""Super-resolution application: ESPCN trained as sub-pixel / resize conv, run as REVD2.

``load_pretrained("espcn-x3")`` gives a bundled model; ``.to_deconv("revd2")`` its edge form.
"""

from .models import ESPCN
from .pretrained import PRETRAINED, load_pretrained, save_model
from .tiling import upscale_tiled

__all__ = ["ESPCN", "PRETRAINED", "load_pretrained", "save_model", "upscale_tiled"]
