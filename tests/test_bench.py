"""The benchmark suite's machinery on tiny layers: implementations agree, files are written."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from upconv.bench import LAYERS, markdown, run_suite, write_results
from upconv.bench.measure import interleaved_times
from upconv.bench.suite import evaluate_targets
from upconv.cli import main


@pytest.fixture(scope="module")
def tiny_results():
    return run_suite(["L1", "L6"], repeats=2, threads=1, scale=0.04, reduced_scale=0.5,
                     gap_s=0.001)


def test_every_implementation_computes_the_layer(tiny_results):
    names = {r.case for r in tiny_results.rows}
    assert {"torch conv+pixel_shuffle (NCHW)", "onnxruntime ConvTranspose (D-NN weights)",
            "upconv revd2 (D-SP)", "upconv auto (D-NN)"} <= names
    for row in tiny_results.rows + tiny_results.reduced:
        assert row.max_abs_error < 1e-3, row
        assert row.ms > 0 and row.runs >= 2 and row.gflops > 0
    refs = {r.case for r in tiny_results.reduced}
    assert {f"reference {a} (D-{f})" for a in ("stdd", "strd", "revd", "revd2", "tdc")
            for f in ("SP", "NN")} <= refs


def test_ratios_and_memory_are_reported(tiny_results):
    for row in tiny_results.rows:
        assert row.ratio_to_best_baseline is not None
        if row.case.startswith("onnxruntime"):
            assert row.extra_bytes is None
        else:
            assert row.extra_bytes is not None
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


def test_interleaved_times_rotate_the_order():
    calls = []
    times = interleaved_times({k: (lambda k=k: calls.append(k)) for k in "abc"}, 3, warmup=0,
                              gap_s=0.001)
    assert calls == list("abcbcacab") and all(len(v) == 3 for v in times.values())


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
