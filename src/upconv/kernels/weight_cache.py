"""Per-weight caches for values derived from a weight tensor (packed kernels, phase kernels).

A derived value depends on the weight's data and some geometry. Entries are keyed by the
weight's identity (dropped when the tensor is freed), its storage (``data_ptr``, new when
``param.data`` is reassigned), its in-place version counter (``_version``, bumped by every
in-place update such as an optimiser step or ``load_state_dict``) and a caller key.
Writes through ``param.data`` in place bypass the version counter and are not seen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

from torch import Tensor

T = TypeVar("T")

#: Derived values kept per weight (older versions and geometries are dropped beyond this).
MAX_PER_WEIGHT = 8

_CACHE: dict[int, tuple[weakref.ref, dict[Hashable, object]]] = {}


def derived(weight: Tensor, key: Hashable, make: Callable[[], T]) -> T:
    """``make()``, computed once per (weight tensor, weight version, ``key``)."""
    ident = id(weight)
    entry = _CACHE.get(ident)
    if entry is None or entry[0]() is not weight:
        entry = (weakref.ref(weight, lambda _, i=ident, cache=_CACHE: cache.pop(i, None)), {})
        _CACHE[ident] = entry
    values = entry[1]
    full_key = (weight._version, weight.data_ptr(), key)
    if full_key not in values:
        if len(values) >= MAX_PER_WEIGHT:
            values.clear()
        values[full_key] = make()
    return values[full_key]  # type: ignore[return-value]
