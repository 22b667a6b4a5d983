"""Time and energy from counts and a hardware profile.

Placement rule (the whole of it): a buffer lives on chip when its size fits in the profile's
``onchip_capacity_bytes``, else off chip; each buffer is judged on its own. Weights and
partial sums always follow this rule; feature maps (the layer's input and output and the
transform maps) follow it under ``feature_maps = "by-size"`` and are forced off or on chip
by ``"offchip"`` / ``"onchip"``.

Energy = MACs × ``mac_pj`` + Σ accesses × ``onchip_access_pj`` or ``offchip_access_pj`` at the
buffer's element width. Time: compute = MACs / peak; memory = off-chip bytes / bandwidth
(plus on-chip bytes / on-chip bandwidth when the profile gives one); ``"roofline"`` takes the
largest, ``"additive"`` the sum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from .counts import Counts, Traffic
from .profiles import HardwareProfile

MODES = ("roofline", "additive")
FEATURE_MAP_ROLES = ("input", "output", "transform")


@dataclass(frozen=True)
class Estimate:
    """Seconds, joules and bytes of one or more layer calls (estimates add up layer by layer)."""

    time_s: float
    energy_j: float
    compute_j: float
    onchip_j: float
    offchip_j: float
    compute_s: float
    offchip_s: float
    onchip_s: float
    onchip_bytes: int
    offchip_bytes: int
    mode: str = "roofline"

    def __add__(self, other: Estimate) -> Estimate:
        if self.mode != other.mode:
            raise ValueError(f"cannot add a {self.mode} estimate to an {other.mode} one")
        return Estimate(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                           for f in fields(self) if f.name != "mode"}, mode=self.mode)

    @property
    def bound(self) -> str:
        """What limits the time: ``"compute"``, ``"off-chip"`` or ``"on-chip"``."""
        parts = {"compute": self.compute_s, "off-chip": self.offchip_s,
                 "on-chip": self.onchip_s}
        return max(parts, key=parts.__getitem__)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"bound": self.bound}


def on_chip(traffic: Traffic, profile: HardwareProfile) -> bool:
    """The placement rule above, for one buffer."""
    if traffic.role in FEATURE_MAP_ROLES and profile.feature_maps != "by-size":
        return profile.feature_maps == "onchip"
    return traffic.nbytes <= profile.onchip_capacity_bytes


def _lookup(table: dict, key: object, what: str, profile: HardwareProfile) -> float:
    if key not in table:
        raise ValueError(f"hardware profile {profile.name!r} has no {what} for {key!r}; "
                         f"add it (it has: {', '.join(map(str, table))})")
    return table[key]


def estimate(counts: Counts, profile: HardwareProfile, mode: str = "roofline") -> Estimate:
    """Time and energy of ``counts`` (one layer call) on ``profile``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    if not isinstance(counts, Counts):
        raise TypeError(f"estimate needs a Counts, got {type(counts).__name__}")
    if not counts.traffic and counts.macs:
        raise ValueError("these Counts carry no per-buffer traffic (combined counts?); "
                         "estimate each layer and add the estimates")
    mac_pj = _lookup(profile.mac_pj, counts.dtype, "MAC energy", profile)
    peak = _lookup(profile.peak_macs_per_second, counts.dtype, "peak MAC rate", profile)
    onchip_pj = offchip_pj = 0.0
    onchip_bytes = offchip_bytes = 0
    for t in counts.traffic:
        bits = 8 * t.element_bytes
        if on_chip(t, profile):
            onchip_pj += t.accesses * _lookup(profile.onchip_access_pj, bits,
                                              "on-chip access energy", profile)
            onchip_bytes += t.accesses * t.element_bytes
        else:
            offchip_pj += t.accesses * _lookup(profile.offchip_access_pj, bits,
                                               "off-chip access energy", profile)
            offchip_bytes += t.accesses * t.element_bytes
    compute_pj = counts.macs * mac_pj
    compute_s = counts.macs / peak
    offchip_s = offchip_bytes / profile.offchip_bytes_per_second
    onchip_s = (0.0 if profile.onchip_bytes_per_second is None
                else onchip_bytes / profile.onchip_bytes_per_second)
    parts = (compute_s, offchip_s, onchip_s)
    return Estimate(
        time_s=max(parts) if mode == "roofline" else sum(parts),
        energy_j=(compute_pj + onchip_pj + offchip_pj) * 1e-12,
        compute_j=compute_pj * 1e-12, onchip_j=onchip_pj * 1e-12, offchip_j=offchip_pj * 1e-12,
        compute_s=compute_s, offchip_s=offchip_s, onchip_s=onchip_s,
        onchip_bytes=onchip_bytes, offchip_bytes=offchip_bytes, mode=mode,
    )


def estimate_all(counts: Iterable[Counts], profile: HardwareProfile,
                 mode: str = "roofline") -> Estimate:
    """Layers run one after another: the sum of their estimates."""
    total = None
    for c in counts:
        e = estimate(c, profile, mode)
        total = e if total is None else total + e
    if total is None:
        raise ValueError("estimate_all needs at least one Counts")
    return total
