"""Hardware profiles: unit energies, peak throughput, memory sizes and bandwidth (TOML).

Bundled profiles live in ``upconv/cost/profiles/*.toml`` (each number documented with its
source); ``upconv calibrate`` writes measured ones to the user data directory. A profile is
named (``"horowitz-45nm"``, ``"edge-int8"``, a calibrated name) or given as a path.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .counts import DTYPES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FEATURE_MAP_RULES = ("by-size", "offchip", "onchip")
WIDTHS = (8, 16, 32)  # element widths in bits that access energies are keyed by
DEFAULT_PROFILE = "horowitz-45nm"


class ProfileError(ValueError):
    """A profile file is missing a field or has a bad value; the message names the field."""


@dataclass(frozen=True)
class HardwareProfile:
    """What the estimate needs to know about a machine.

    Energies in picojoules: ``mac_pj[dtype]`` per multiply-accumulate, ``onchip_access_pj[bits]``
    and ``offchip_access_pj[bits]`` per element access of that width. ``peak_macs_per_second``
    per dtype; ``onchip_capacity_bytes``; ``offchip_bytes_per_second``; optionally
    ``onchip_bytes_per_second`` (None: on-chip traffic takes no time of its own).
    """

    name: str
    description: str
    default_dtype: str
    peak_macs_per_second: dict[str, float]
    mac_pj: dict[str, float]
    onchip_access_pj: dict[int, float]
    offchip_access_pj: dict[int, float]
    onchip_capacity_bytes: int
    offchip_bytes_per_second: float
    onchip_bytes_per_second: float | None = None
    feature_maps: str = "by-size"
    source: str = field(default="", compare=False)

    def to_toml_dict(self) -> dict[str, object]:
        memory: dict[str, object] = {
            "onchip_capacity_bytes": self.onchip_capacity_bytes,
            "offchip_bytes_per_second": self.offchip_bytes_per_second,
            "feature_maps": self.feature_maps,
        }
        if self.onchip_bytes_per_second is not None:
            memory["onchip_bytes_per_second"] = self.onchip_bytes_per_second
        return {
            "name": self.name, "description": self.description,
            "default_dtype": self.default_dtype,
            "compute": {"peak_macs_per_second": dict(self.peak_macs_per_second)},
            "energy": {
                "mac_pj": dict(self.mac_pj),
                "onchip_access_pj": {str(k): v for k, v in self.onchip_access_pj.items()},
                "offchip_access_pj": {str(k): v for k, v in self.offchip_access_pj.items()},
            },
            "memory": memory,
        }


# --- validation ---------------------------------------------------------------------------

_SCHEMA: dict[str, set[str]] = {
    "": {"name", "description", "default_dtype", "compute", "energy", "memory"},
    "compute": {"peak_macs_per_second"},
    "energy": {"mac_pj", "onchip_access_pj", "offchip_access_pj"},
    "memory": {"onchip_capacity_bytes", "offchip_bytes_per_second", "onchip_bytes_per_second",
               "feature_maps"},
}


def _fail(where: str, field_name: str, problem: str) -> ProfileError:
    return ProfileError(f"hardware profile {where}: field '{field_name}' {problem}")


def _table(data: dict, key: str, where: str) -> dict:
    section, _, name = key.rpartition(".")
    parent = data if not section else data[section]
    if name not in parent:
        raise _fail(where, key, "is missing")
    value = parent[name]
    if not isinstance(value, dict):
        raise _fail(where, key, f"must be a table, got {value!r}")
    return value


def _positive(value: object, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise _fail(where, key, f"must be a positive number, got {value!r}")
    return float(value)


def _per_dtype(table: dict, where: str, key: str) -> dict[str, float]:
    if not table:
        raise _fail(where, key, f"needs at least one of {', '.join(DTYPES)}")
    out = {}
    for dtype, value in table.items():
        if dtype not in DTYPES:
            raise _fail(where, f"{key}.{dtype}", f"is not a dtype; use one of {', '.join(DTYPES)}")
        out[dtype] = _positive(value, where, f"{key}.{dtype}")
    return out


def _per_width(table: dict, where: str, key: str) -> dict[int, float]:
    out = {}
    for width in WIDTHS:
        if str(width) not in table:
            raise _fail(where, f"{key}.{width}", f"is missing (give {', '.join(map(str, WIDTHS))}"
                        " bit widths)")
    for width, value in table.items():
        if width not in {str(w) for w in WIDTHS}:
            raise _fail(where, f"{key}.{width}", f"is not a width in bits; use {WIDTHS}")
        out[int(width)] = _positive(value, where, f"{key}.{width}")
    return out


def profile_from_dict(data: dict, where: str = "<dict>") -> HardwareProfile:
    """Validate a parsed TOML document; a :class:`ProfileError` names the bad field."""
    if not isinstance(data, dict):
        raise ProfileError(f"hardware profile {where} must be a table")
    for section, allowed in _SCHEMA.items():
        table = data if not section else _table(data, section, where)
        for key in table:
            if key not in allowed:
                full = f"{section}.{key}" if section else key
                known = ", ".join(sorted(allowed))
                raise _fail(where, full, f"is not a profile field; known: {known}")
    for key in ("name", "default_dtype"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise _fail(where, key, f"must be a non-empty string, got {data.get(key)!r}")
    if data["default_dtype"] not in DTYPES:
        raise _fail(where, "default_dtype", f"must be one of {', '.join(DTYPES)}")
    peak = _per_dtype(_table(data, "compute.peak_macs_per_second", where), where,
                      "compute.peak_macs_per_second")
    mac = _per_dtype(_table(data, "energy.mac_pj", where), where, "energy.mac_pj")
    for key, table in (("compute.peak_macs_per_second", peak), ("energy.mac_pj", mac)):
        if data["default_dtype"] not in table:
            raise _fail(where, f"{key}.{data['default_dtype']}", "is missing (the default dtype)")
    memory = data["memory"]
    for key in ("onchip_capacity_bytes", "offchip_bytes_per_second"):
        if key not in memory:
            raise _fail(where, f"memory.{key}", "is missing")
    capacity = memory["onchip_capacity_bytes"]
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        raise _fail(where, "memory.onchip_capacity_bytes",
                    f"must be a non-negative integer, got {capacity!r}")
    rule = memory.get("feature_maps", "by-size")
    if rule not in FEATURE_MAP_RULES:
        raise _fail(where, "memory.feature_maps",
                    f"must be one of {', '.join(FEATURE_MAP_RULES)}, got {rule!r}")
    onchip_bw = memory.get("onchip_bytes_per_second")
    return HardwareProfile(
        name=data["name"], description=str(data.get("description", "")),
        default_dtype=data["default_dtype"], peak_macs_per_second=peak, mac_pj=mac,
        onchip_access_pj=_per_width(_table(data, "energy.onchip_access_pj", where), where,
                                    "energy.onchip_access_pj"),
        offchip_access_pj=_per_width(_table(data, "energy.offchip_access_pj", where), where,
                                     "energy.offchip_access_pj"),
        onchip_capacity_bytes=capacity,
        offchip_bytes_per_second=_positive(memory["offchip_bytes_per_second"], where,
                                           "memory.offchip_bytes_per_second"),
        onchip_bytes_per_second=None if onchip_bw is None else _positive(
            onchip_bw, where, "memory.onchip_bytes_per_second"),
        feature_maps=rule, source=where,
    )


# --- finding, loading, saving ----------------------------------------------------------------


def user_profile_dir() -> Path:
    """Where ``upconv calibrate`` writes profiles by default (``platformdirs``' user data dir;
    where it is not installed, ``$XDG_DATA_HOME/upconv`` or ``~/.local/share/upconv``)."""
    try:
        import platformdirs
    except ImportError:
        base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"),
                                                               ".local", "share")
        return Path(base) / "upconv" / "profiles"
    return Path(platformdirs.user_data_dir("upconv")) / "profiles"


def bundled_profiles() -> list[str]:
    root = resources.files("upconv.cost") / "profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def available_profiles() -> list[str]:
    """Bundled names, then profiles saved in :func:`user_profile_dir`."""
    user = user_profile_dir()
    saved = sorted(p.stem for p in user.glob("*.toml")) if user.is_dir() else []
    return bundled_profiles() + [s for s in saved if s not in bundled_profiles()]


def load_profile(name_or_path: str | os.PathLike = DEFAULT_PROFILE) -> HardwareProfile:
    """A bundled or saved profile by name, or a TOML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".toml") or os.sep in text or path.is_file()):
        bundled = resources.files("upconv.cost") / "profiles" / f"{text}.toml"
        if bundled.is_file():
            return _parse(bundled.read_text(encoding="utf-8"), text)
        path = user_profile_dir() / f"{text}.toml"
        if not path.is_file():
            raise ValueError(f"no hardware profile named {text!r}; available: "
                             f"{', '.join(available_profiles())}, or pass a path to a TOML file")
    if not path.is_file():
        raise ValueError(f"hardware profile file {text!r} does not exist")
    return _parse(path.read_text(encoding="utf-8"), str(path))


def _parse(text: str, where: str) -> HardwareProfile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"hardware profile {where} is not valid TOML: {err}") from None
    return profile_from_dict(data, where)


def save_profile(profile: HardwareProfile, path: str | os.PathLike, header: str = "") -> Path:
    """Write ``profile`` as TOML atomically (temp file in the same folder, then rename)."""
    import tomli_w

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = tomli_w.dumps(profile.to_toml_dict())
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(comment + body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
