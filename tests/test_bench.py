"""The benchmark suite's machinery on tiny layers: implementations agree, files are written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from oracle import conv_transpose2d_oracle

from upconv.bench import (
    HELDOUT,
    LAYERS,
    SMALL,
    ZOOS,
    Row,
    all_layer_ids,
    layer_by_id,
    markdown,
    run_suite,
    write_results,
)
from upconv.bench.cases import expected
from upconv.bench.measure import interleaved_times, paired_ratio, pooled_paired_ratio
from upconv.bench.suite import evaluate_targets
from upconv.bench.zoo import make_tensors
from upconv.cli import main
from upconv.cli.bench import results_name


@pytest.fixture(scope="module")
def tiny_results():
    return run_suite(["L1", "L6"], repeats=2, threads=1, scale=0.04, reduced_scale=0.5,
                     gap_s=0.001)


def test_every_implementation_computes_the_layer(tiny_results):
    names = {r.case for r in tiny_results.rows}
    assert {"torch conv+pixel_shuffle (NCHW)", "onnxruntime ConvTranspose (D-NN weights)",
            "upconv revd2 (D-SP)", "upconv auto (D-NN)", "upconv revd2 (D-SP, out=)",
            "upconv revd2 (D-NN, out=)"} <= names
    for row in tiny_results.rows + tiny_results.reduced:
        assert row.max_abs_error < 1e-3, row
        assert row.ms > 0 and row.runs >= 2 and row.gflops > 0
    refs = {r.case for r in tiny_results.reduced}
    assert {f"reference {a} (D-{f})" for a in ("stdd", "strd", "revd", "revd2", "tdc")
            for f in ("SP", "NN")} <= refs


def test_auto_rows_name_the_candidate_they_ran(tiny_results):
    from upconv.autotune import candidates

    for row in tiny_results.rows:
        if row.case.startswith("upconv auto"):
            assert row.choice in candidates(), row
        else:
            assert row.choice == "", row
    md = markdown(tiny_results)
    assert any(f"upconv auto (D-SP) → {c}" in md for c in candidates())


def test_ratios_and_memory_are_reported(tiny_results):
    for row in tiny_results.rows:
        assert row.ratio_to_best_baseline is not None
        if row.case.startswith("onnxruntime"):
            assert row.extra_bytes is None
        else:
            assert row.extra_bytes is not None
        if row.case.startswith("upconv revd2 (D-") and row.case.endswith("out=)"):
            assert row.extra_bytes >= 0, row  # allocates no output at all
        if row.case.startswith("upconv revd2"):
            # the kernel's only scratch is one row of phase accumulators per thread
            layer = LAYERS[row.layer].scaled(tiny_results.scale)
            assert 0 <= row.extra_bytes < 4 * layer.n * layer.cin * layer.h * layer.w, row
    assert max(r.ratio_to_best_baseline for r in tiny_results.rows if r.family == "baseline") \
        == pytest.approx(1.0)
    assert tiny_results.peak_gflops > 0 and tiny_results.copy_gbs > 0


def test_targets_follow_the_measured_rows(tiny_results):
    targets = evaluate_targets(tiny_results.rows)
    got = {(t["layer"], t["target"]) for t in targets}
    assert ("L1", "D-NN revd2 vs torch resize-conv") in got
    assert ("L1", "D-SP revd2 % of roofline") in got
    assert ("L6", "D-SP revd2 vs best torch C-SP") in got
    for t in targets:
        assert t["met"] == (t["value"] >= t["goal"])


def test_results_files_are_written(tiny_results, tmp_path):
    paths = write_results(tiny_results, tmp_path)
    assert {p.name for p in paths} >= {"latest.md", "latest.json"}
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["machine"]["threads"] == 1 and data["machine"]["cpu"]
    assert len(data["rows"]) == len(tiny_results.rows)
    text = (tmp_path / "latest.md").read_text()
    assert text == markdown(tiny_results) and "## Targets" in text and "| L6 |" in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_interleaved_times_vary_the_order():
    """Every round runs each function once; orders and neighbours vary; runs repeat."""
    def record():
        calls = []
        times = interleaved_times({k: (lambda k=k: calls.append(k)) for k in "abcd"}, 12,
                                  warmup=0)
        assert all(len(v) == 12 for v in times.values())
        return calls

    calls = record()
    rounds = [calls[i : i + 4] for i in range(0, len(calls), 4)]
    assert all(sorted(r) == list("abcd") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 3
    # what precedes "b" within a round is not always the same function
    assert len({r[r.index("b") - 1] for r in rounds if r.index("b") > 0}) > 1
    assert record() == calls  # seeded: the same order run to run


def test_interleaved_times_settle_after_spinning_cases(monkeypatch):
    from upconv.bench import measure

    slept, calls = [], []
    monkeypatch.setattr(measure.time, "sleep", lambda s: slept.append((s, calls[-1:])))
    interleaved_times({k: (lambda k=k: calls.append(k)) for k in "ab"}, 6, warmup=0,
                      gap_s=0.01, settle_s={"a": 0.3})
    # before each call the gap, or a's settle time when a ran just before
    assert len(slept) == len(calls) == 12
    assert [s for s, _ in slept] == [0.3 if prev == ["a"] else 0.01 for _, prev in slept]
    assert 0.3 in [s for s, _ in slept]


def test_interleaved_times_run_before_each_timed_call():
    calls = []
    interleaved_times({k: (lambda k=k: calls.append(k)) for k in "ab"}, 2, warmup=1,
                      before=lambda: calls.append("conv"))
    # warm-up calls run bare; every timed call has the (untimed) previous layer right before
    assert calls[:2] == ["a", "b"]
    assert calls[2::2] == ["conv"] * 4 and sorted(calls[3::2]) == ["a", "a", "b", "b"]


def test_paired_ratio_takes_each_ratio_within_a_round():
    # the new code is 1.25x faster in every round while the machine drifts 3x: the ratio of
    # the medians would mix rounds, the paired ratio sees the same 1.25 in each
    base = [1.0, 3.0, 1.5, 2.0, 2.5, 1.2, 2.8, 1.1]
    mid, low, high = paired_ratio(base, [b / 1.25 for b in base])
    assert mid == pytest.approx(1.25) and low == pytest.approx(1.25) and high == pytest.approx(1.25)
    # spread: the interval brackets the median; two rounds are too few for an interval
    ratios = [0.9, 1.0, 1.05, 1.1, 1.2, 1.3, 0.95, 1.15, 1.02, 1.08, 1.12]
    mid, low, high = paired_ratio(ratios, [1.0] * len(ratios))
    assert mid == pytest.approx(1.08) and low < mid < high and low >= 0.9 and high <= 1.3
    assert paired_ratio([2.0, 3.0], [1.0, 1.0])[1:] == (None, None)
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_ratio([1.0, 2.0], [1.0])


def test_pooled_paired_ratio_counts_the_spread_between_processes():
    rng = np.random.default_rng(1)
    base = list(rng.uniform(1.0, 2.0, 40))

    def process(speedup):  # rounds whose ratios scatter ±1 % around this process's speed-up
        noise = rng.uniform(0.99, 1.01, len(base))
        return base, [b / (speedup * f) for b, f in zip(base, noise, strict=True)]

    # one process: paired_ratio's figures
    one = process(1.02)
    assert pooled_paired_ratio([one])[:3] == paired_ratio(*one)
    # processes that agree: a tight interval around their common speed-up
    mid, low, high, each = pooled_paired_ratio([process(1.02) for _ in range(4)])
    assert 1.01 < low <= mid <= high < 1.03 and len(each) == 4
    # processes that disagree (a process effect pairing within a process cannot cancel): the
    # pooled rounds alone would give a narrow interval; the cluster bootstrap does not
    groups = [process(s) for s in (0.97, 1.0, 1.03, 1.06)]
    mid, low, high, each = pooled_paired_ratio(groups)
    flat = paired_ratio([b for g in groups for b in g[0]], [n for g in groups for n in g[1]])
    assert low < 1.0 < high and high - low > 2 * (flat[2] - flat[1])
    assert each == pytest.approx([0.97, 1.0, 1.03, 1.06], abs=0.01)
    with pytest.raises(ValueError, match="at least one"):
        pooled_paired_ratio([])
    with pytest.raises(ValueError, match="equal, non-empty"):
        pooled_paired_ratio([one, ([1.0], [])])


def test_suite_interleaves_the_previous_conv(tiny_results):
    assert "conv Cin→Cin" in tiny_results.before
    assert "then (untimed) PyTorch conv" in markdown(tiny_results)


def test_cli_quick_run_and_bad_layers(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["bench", "--quick", "--layers", "l3", "--threads", "1",
                               "--no-onnxruntime", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "| L3 |" in res.output and (tmp_path / "latest.json").exists()
    res = runner.invoke(main, ["bench", "--layers", "L9"])
    assert res.exit_code != 0 and "L9 is not a layer id" in res.output
    with pytest.raises(ValueError, match="unknown layer"):
        run_suite(["L7"])
    assert set(LAYERS) == {f"L{i}" for i in range(1, 7)}


def test_suite_tunes_auto_in_a_private_cache(tmp_path, monkeypatch):
    from upconv import autotune

    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    run_suite(["L2"], repeats=1, threads=1, scale=0.03, with_ort=False, with_references=False,
              memory=False, gap_s=0.0)
    assert not (tmp_path / autotune.CACHE_FILE).exists()  # the user's cache is untouched
    assert autotune.cache_path().parent == tmp_path  # and the setting is restored


def test_heldout_layers_are_a_separate_zoo():
    assert set(HELDOUT) == {f"H{i}" for i in range(1, 7)} and not set(HELDOUT) & set(LAYERS)
    assert ZOOS == {"paper": LAYERS, "heldout": HELDOUT, "small": SMALL}
    assert all_layer_ids() == [*LAYERS, *HELDOUT, *SMALL]
    assert layer_by_id("H3") is HELDOUT["H3"] and layer_by_id("L1") is LAYERS["L1"]
    assert HELDOUT["H3"].k == 5
    with pytest.raises(KeyError, match=r"L1, .*H6, .*S3"):
        layer_by_id("H7")
    assert layer_by_id("S2") is SMALL["S2"]
    for layer in SMALL.values():  # where a call's fixed cost shows: at most 64 × 64 inputs
        assert layer.h * layer.w <= 64 * 64
    for layer in HELDOUT.values():  # realistic but small enough for a full run in minutes
        assert layer.n * layer.c * layer.r**2 * layer.h * layer.w <= 10_000_000
        assert 2 * layer.macs_sp() <= 5e9


@pytest.mark.parametrize("lid", list(HELDOUT))
def test_heldout_deconvolutions_match_the_convolutions(lid):
    layer = HELDOUT[lid].scaled(0.05)
    t = make_tensors(layer)
    want = expected(layer, t)
    out_h, out_w = layer.r * layer.h, layer.r * layer.w
    assert want["SP"].shape == want["NN"].shape == (layer.n, layer.c, out_h, out_w)
    for w, b, geo, key in ((t.wd_sp, t.bd_sp, t.geo_sp, "SP"), (t.wd_nn, t.b_nn, t.geo_nn, "NN")):
        assert geo.output_size(layer.h, layer.w) == (out_h, out_w)
        got = conv_transpose2d_oracle(t.x, w, b, geo.stride, geo.padding, geo.output_padding)
        assert (got - want[key]).abs().max() < 1e-4, key


def test_cli_heldout_zoo_writes_its_own_files(tmp_path):
    res = CliRunner().invoke(main, ["bench", "--zoo", "heldout", "--quick", "--layers", "h3",
                                    "--threads", "1", "--no-onnxruntime", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    names = {p.name for p in tmp_path.iterdir()}
    assert {"heldout.md", "heldout.json"} <= names and not names & {"latest.md", "latest.json"}
    assert len([n for n in names if n.startswith("heldout-")]) == 2
    data = json.loads((tmp_path / "heldout.json").read_text())
    assert {r["layer"] for r in data["rows"]} == {"H3"}
    assert all(r["max_abs_error"] < 1e-3 for r in data["rows"])  # the K = 5 layer is computed
    assert {t["target"] for t in data["targets"]} >= {
        "D-SP revd2 vs best torch C-SP (generic)", "D-NN revd2 vs torch conv_transpose2d (generic)"}
    assert "(generic)" in (tmp_path / "heldout.md").read_text()


def test_heldout_results_name_and_bad_ids():
    assert results_name("paper", ["L1", "L2"]) == "latest"
    assert results_name("heldout", list(HELDOUT)) == "heldout"
    assert results_name("paper", ["L1", "H2"]) == "heldout"  # never overwrite latest.*
    assert results_name("small", list(SMALL)) == "small"
    assert results_name("paper", ["L1", "S1"]) == "small"
    res = CliRunner().invoke(main, ["bench", "--zoo", "heldout", "--layers", "H1,H9"])
    assert res.exit_code != 0 and "H9 is not a layer id" in res.output
    assert "L1,L2,L3,L4,L5,L6,H1,H2,H3,H4,H5,H6" in res.output
    res = CliRunner().invoke(main, ["bench", "--zoo", "other"])
    assert res.exit_code != 0 and "heldout" in res.output
    with pytest.raises(ValueError, match=r"unknown layer.*L1, .*H6"):
        run_suite(["H7"])


def _row(layer: str, case: str, ms: float, ratio: float | None = None) -> Row:
    fun = "NN" if "NN" in case or "interpolate" in case else "SP"
    return Row(layer, fun, case, "upconv" if case.startswith("upconv") else "baseline", ms, 2,
               ratio, 1.0, 10.0, 0, 0.0)


def test_heldout_layers_get_the_generic_targets():
    rows = [_row(lid, case, ms, ratio) for lid in ("H2", "L1") for case, ms, ratio in (
        ("torch conv+pixel_shuffle (NCHW)", 12.0, None),
        ("torch conv+pixel_shuffle (channels_last)", 10.0, None),
        ("torch conv_transpose2d (D-SP weights)", 30.0, None),
        ("torch interpolate(nearest)+conv", 100.0, None),
        ("torch conv_transpose2d (D-NN weights)", 15.0, None),
        ("upconv revd2 (D-SP)", 8.0, None),
        ("upconv revd2 (D-NN)", 12.0, None),
        ("upconv auto (D-SP)", 9.0, 1.1),
        ("upconv auto (D-SP, channels_last)", 11.0, 0.9),
        ("upconv auto (D-NN)", 16.0, 0.9))]
    targets = evaluate_targets(rows)
    h2 = {t["target"]: (t["value"], t["goal"], t["met"]) for t in targets if t["layer"] == "H2"}
    assert h2 == {
        "D-SP revd2 vs best torch C-SP (generic)": (1.25, 1.0, True),
        "D-SP revd2 vs torch conv_transpose2d (generic)": (3.75, 3.0, True),
        "D-NN revd2 vs torch conv_transpose2d (generic)": (1.25, 1.5, False),
        "auto (D-SP) vs best baseline (generic)": (1.1, 0.95, True),
        "auto (D-NN) vs best baseline (generic)": (0.9, 0.95, False),
    }
    l1 = {t["target"]: t["goal"] for t in targets if t["layer"] == "L1"}  # the issue's, as before
    assert l1 == {"D-SP revd2 vs best torch C-SP": 1.3,
                  "D-SP revd2 vs torch conv_transpose2d": 3.0,
                  "D-NN revd2 vs torch resize-conv": 10.0,
                  "D-NN revd2 vs torch conv_transpose2d": 1.5,
                  "auto (D-SP) vs best baseline": 0.95, "auto (D-NN) vs best baseline": 0.95,
                  "D-SP revd2 % of roofline": 50.0}


def test_results_files_take_a_name(tiny_results, tmp_path):
    paths = write_results(tiny_results, tmp_path, name="heldout")
    stamp = tiny_results.machine["date_utc"].replace(":", "").replace("-", "")
    assert [p.name for p in paths] == ["heldout.md", "heldout.json", f"heldout-{stamp}.md",
                                       f"heldout-{stamp}.json"]
    assert not (tmp_path / "latest.md").exists()
    assert [p.name for p in write_results(tiny_results, tmp_path)][2] == f"bench-{stamp}.md"
    with pytest.raises(ValueError, match="file stem"):
        write_results(tiny_results, tmp_path, name="../x")
