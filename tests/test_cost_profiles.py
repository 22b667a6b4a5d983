"""Hardware profiles load and validate; estimates follow the documented rule and formulas."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

from upconv.cost import count, estimate, load_profile
from upconv.cost.counts import Counts, Traffic, assemble
from upconv.cost.estimate import estimate_all, on_chip
from upconv.cost.profiles import (
    ProfileError,
    available_profiles,
    bundled_profiles,
    profile_from_dict,
    save_profile,
)


def test_bundled_profiles_load_and_keep_horowitz_figures():
    assert {"horowitz-45nm", "edge-int8"} <= set(bundled_profiles())
    assert {"horowitz-45nm", "edge-int8"} <= set(available_profiles())
    p = load_profile()
    assert p.name == "horowitz-45nm" and p.default_dtype == "float32"
    assert p.mac_pj["float32"] == pytest.approx(3.7 + 0.9)  # fp32 mult + add
    assert p.mac_pj["int8"] == pytest.approx(0.2 + 0.1)  # int8 mult + int32 add
    assert p.offchip_access_pj[64 // 2] * 2 == pytest.approx((1300 + 2600) / 2)  # DRAM / 64 bit
    assert p.onchip_access_pj[32] * 2 == pytest.approx(100)  # 1 MB SRAM per 64-bit access
    edge = load_profile("edge-int8")
    assert edge.default_dtype == "int8" and edge.onchip_capacity_bytes < p.onchip_capacity_bytes


def test_profile_round_trips_through_toml(tmp_path):
    path = save_profile(load_profile("edge-int8"), tmp_path / "sub" / "mine.toml", "a header")
    assert path.read_text().startswith("# a header\n")
    assert load_profile(path) == load_profile("edge-int8")
    assert [p.name for p in path.parent.iterdir()] == ["mine.toml"]  # no temp file left


def _doc():
    from importlib import resources
    path = resources.files("upconv.cost") / "profiles" / "horowitz-45nm.toml"
    return tomllib.loads(path.read_text())


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d["energy"].pop("mac_pj"), "energy.mac_pj"),
    (lambda d: d["energy"]["mac_pj"].update(float32="cheap"), "energy.mac_pj.float32"),
    (lambda d: d["energy"]["mac_pj"].update(float64=1.0), "energy.mac_pj.float64"),
    (lambda d: d["energy"]["onchip_access_pj"].pop("16"), "energy.onchip_access_pj.16"),
    (lambda d: d["energy"]["offchip_access_pj"].update({"12": 3.0}), "energy.offchip_access_pj.12"),
    (lambda d: d["memory"].update(onchip_capacity_bytes=-1), "memory.onchip_capacity_bytes"),
    (lambda d: d["memory"].update(offchip_bytes_per_second=0), "memory.offchip_bytes_per_second"),
    (lambda d: d["memory"].update(feature_maps="sometimes"), "memory.feature_maps"),
    (lambda d: d["memory"].update(bandwith=1.0), "memory.bandwith"),
    (lambda d: d.pop("compute"), "compute"),
    (lambda d: d.update(default_dtype="bfloat16"), "default_dtype"),
    (lambda d: d["compute"]["peak_macs_per_second"].pop("float32"),
     "compute.peak_macs_per_second.float32"),
])
def test_malformed_profile_names_the_field(mutate, field):
    doc = _doc()
    mutate(doc)
    with pytest.raises(ProfileError, match=f"field '{field}'"):
        profile_from_dict(doc, "test.toml")


def test_bad_profile_files_and_names(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(bad)
    with pytest.raises(ValueError, match=r"no hardware profile named 'nope'.*horowitz-45nm"):
        load_profile("nope")
    with pytest.raises(ValueError, match="does not exist"):
        load_profile(tmp_path / "missing.toml")


def _one_buffer(role: str, elements: int, element_bytes: int = 4, macs: int = 0) -> Counts:
    t = Traffic("b", role, elements, element_bytes, elements, elements)
    return assemble("conv", None, 1, "float32", macs, 0, [t], 0)


def test_energy_and_time_by_hand():
    p = load_profile()
    c = count("D-SP", in_channels=4, out_channels=2, kernel_size=3, scale=2, height=5, width=6)
    e = estimate(c, p)
    # everything fits on chip here: all accesses at 32-bit on-chip energy
    accesses = sum(t.accesses for t in c.traffic)
    assert all(on_chip(t, p) for t in c.traffic) and e.offchip_j == 0
    assert e.onchip_j == pytest.approx(accesses * 50e-12)
    assert e.compute_j == pytest.approx(c.macs * 4.6e-12)
    assert e.energy_j == pytest.approx(e.compute_j + e.onchip_j + e.offchip_j)
    assert e.time_s == pytest.approx(c.macs / 1.28e11) and e.bound == "compute"
    add = estimate(c, p, mode="additive")
    assert add.time_s == pytest.approx(add.compute_s + add.offchip_s + add.onchip_s)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 10**7), st.sampled_from([1, 2, 4]), st.sampled_from(list(
    ("input", "output", "transform", "weight", "partial_sum"))), st.integers(0, 10**6))
def test_placement_rule_is_size_against_capacity(elements, width, role, macs):
    p = load_profile()
    c = _one_buffer(role, elements, width, macs)
    e = estimate(c, p, mode="roofline")
    fits = elements * width <= p.onchip_capacity_bytes
    assert (e.offchip_bytes == 0) == fits
    accesses = 2 * elements
    table = p.onchip_access_pj if fits else p.offchip_access_pj
    assert e.energy_j == pytest.approx((accesses * table[8 * width] + macs * 4.6) * 1e-12)
    assert e.time_s == pytest.approx(max(macs / 1.28e11, e.offchip_bytes / 1.28e10))
    forced = replace(p, feature_maps="offchip")
    moved = estimate(c, forced).offchip_bytes > 0
    assert moved == (role in ("input", "output", "transform") or not fits)


def test_estimates_add_and_reject_bad_input():
    p = load_profile()
    c = count("C-SP", in_channels=2, out_channels=1, kernel_size=3, scale=2, height=4, width=4)
    e = estimate(c, p)
    two = estimate_all([c, c], p)
    assert two.energy_j == pytest.approx(2 * e.energy_j) and two.time_s == pytest.approx(
        2 * e.time_s)
    with pytest.raises(ValueError, match="mode must be one of"):
        estimate(c, p, mode="max")
    with pytest.raises(ValueError, match="no MAC energy for 'int8'"):
        estimate(replace(c, dtype="int8"), replace(p, mac_pj={"float32": 4.6}))
    assert math.isfinite(estimate(c, load_profile("edge-int8")).energy_j)
