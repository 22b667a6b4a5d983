"""The paper's analysis, reproduced: ESPCN ×3 on a 321×481 BSD300 image.

Colbert et al. estimate that REVD2 improves latency 2.1× / 2.8× and energy 2.1× / 2.7×
against sub-pixel / resize convolution. :func:`paper_comparison` computes our ratios
(trained / REVD2) for the upsampling layer and the whole model under a profile, and under
variants of the assumptions that move them (the authors' code assumes Cin = C).
"""

from __future__ import annotations

from dataclasses import replace

from .estimate import estimate_all
from .profiles import HardwareProfile
from .report import layer_model
from .walk import builtin_model, walk_module

PAPER = {"C-SP": {"time": 2.1, "energy": 2.1}, "C-NN": {"time": 2.8, "energy": 2.7}}
SHAPE = (1, 1, 321, 481)


def _ratios(model, profile: HardwareProfile, layers: str, mode: str) -> dict[str, float]:
    chosen = model.upsampling if layers == "layer" else model.layers
    trained = estimate_all([lc.under("trained") for lc in chosen], profile, mode)
    revd2 = estimate_all([lc.under("revd2") for lc in chosen], profile, mode)
    return {"time": trained.time_s / revd2.time_s, "energy": trained.energy_j / revd2.energy_j}


def paper_comparison(profile: HardwareProfile, scale: int = 3) -> list[dict]:
    """Rows of ``{case, op, scope, time, energy, paper_time, paper_energy}`` (ratios
    trained / REVD2; > 1 means REVD2 is better)."""
    rows: list[dict] = []
    _, _, h, w = SHAPE
    cases = [("ESPCN as published (Cin=32, C=1)", profile, 32, 1, "roofline"),
             ("additive time (compute + memory)", profile, 32, 1, "additive"),
             ("all feature maps on chip", replace(profile, feature_maps="onchip"), 32, 1,
              "roofline"),
             ("authors' code: Cin = C = 32", profile, 32, 32, "roofline")]
    for upsampler, op in (("subpixel", "C-SP"), ("resize", "C-NN")):
        net = walk_module(builtin_model("espcn", scale, upsampler), SHAPE,
                          dtype=profile.default_dtype)
        for case, prof, cin, c, mode in cases:
            layer = layer_model(op, in_channels=cin, out_channels=c, kernel_size=3, scale=scale,
                                height=h, width=w, dtype=profile.default_dtype)
            scopes = [("layer", layer)] + ([("whole model", net)] if c == 1 else [])
            for scope, model in scopes:
                r = _ratios(model, prof, "layer" if scope == "layer" else "model", mode)
                rows.append({"case": case, "op": op, "scope": scope, **r,
                             "paper_time": PAPER[op]["time"],
                             "paper_energy": PAPER[op]["energy"]})
    return rows


def print_paper(rows: list[dict], profile_name: str, console=None) -> None:
    from rich.table import Table

    from .report import wide_console

    console = console or wide_console()
    table = Table(title=f"ESPCN x3 on 321x481, trained / REVD2 (profile {profile_name})",
                  title_justify="left")
    for col in ("layer", "scope", "assumptions", "time ×", "energy ×", "paper time ×",
                "paper energy ×"):
        table.add_column(col, justify="right" if "×" in col else "left")
    for r in rows:
        table.add_row(r["op"], r["scope"], r["case"], f"{r['time']:.2f}", f"{r['energy']:.2f}",
                      f"{r['paper_time']}", f"{r['paper_energy']}")
    console.print(table)
