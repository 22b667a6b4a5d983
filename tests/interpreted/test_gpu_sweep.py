"""The block-size sweep (:mod:`upconv.bench.gpu_sweep`) runs end to end in the interpreter:
the tuner's candidates come first, every configuration it times is checked against TDC, and
the report holds each case; under the interpreter the milliseconds mean nothing."""

from __future__ import annotations

import json

from upconv.bench import gpu_sweep


def test_sweep_case_times_the_tuners_candidates_first():
    r = gpu_sweep.sweep_case("G2", "fp32", budget_s=60, scale=0.02, device="cpu", limit=2,
                             reps=1)
    assert r["tried"] == 2 and r["grid_size"] == 2
    timed = [k for k, v in r["ms"].items() if isinstance(v, float)]
    assert timed == r["tuner_candidates"][:2]  # both ran correctly, in the tuner's order
    assert r["best"] in timed and r["best_ms"] == min(r["ms"][k] for k in timed)
    assert r["best_tuner"] == r["best"] and r["cudnn_cl_ms"] > 0


def test_dry_run_writes_json_and_markdown(tmp_path):
    assert gpu_sweep.main([str(tmp_path), "--dry-run", "--cases", "G1:fp16",
                           "--budget-s", "30"]) == 0
    results = json.loads((tmp_path / "sweep.json").read_text())
    (case,) = results["cases"]
    assert (case["layer"], case["dtype"], case["layout"]) == ("G1", "fp16", "channels_last")
    assert 1 <= case["tried"] <= 3
    md = (tmp_path / "sweep.md").read_text()
    assert "| G1 | fp16 |" in md and "## G1 fp16: the ten fastest" in md
