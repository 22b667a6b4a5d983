"""Super-resolution application: ESPCN trained as sub-pixel / resize conv, run as REVD2."""

from .models import ESPCN

__all__ = ["ESPCN"]
