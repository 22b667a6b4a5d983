"""The whole-model benchmark: variants agree, the profiler finds the upsampling layer, files."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import upconv
from upconv.bench import models as M
from upconv.cli import main


def _tiny(build, weight, shape=(1, 1, 12, 16)):
    return M.ModelSpec("T1", "tiny", build, shape, weight)


@pytest.fixture(scope="module")
def espcn_rows():
    spec = _tiny(M.MODELS["M1"].build, M.MODELS["M1"].upsampler_weight)
    return M.measure_model(spec, "revd2", repeats=2, warmup=1)


def test_every_variant_computes_the_trained_output(espcn_rows):
    assert {(r.variant, r.mode) for r in espcn_rows} == {
        ("trained", "eager"), ("trained", "compile"), ("converted", "eager"),
        ("converted", "compile")}
    assert all(r.max_abs_error < 1e-5 and r.runs == 2 and r.ms > 0 for r in espcn_rows)
    trained = [r for r in espcn_rows if r.variant == "trained"]
    assert all(r.speedup == 1.0 and r.paired_speedup == 1.0 for r in trained)
    # two rounds are too few for an interval
    assert all(r.paired_speedup > 0 and r.paired_low is None for r in espcn_rows)


def test_timed_compiled_models_run_inductors_default_kernels(monkeypatch):
    """The profiled copies (compiled with Inductor's kernels named) must not serve the timed
    models: Dynamo's cache would hand a copy's graph to any model of the same structure."""
    seen: dict = {}
    real = M.interleaved_times

    def spy(variants, *args, **kwargs):
        from torch.profiler import ProfilerActivity, profile

        for key, fn in variants.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            seen[key] = {e.name for e in prof.events()}
        return real(variants, *args, **kwargs)

    monkeypatch.setattr(M, "interleaved_times", spy)
    spec = _tiny(M.MODELS["M1"].build, M.MODELS["M1"].upsampler_weight)
    rows = M.measure_model(spec, "revd2", repeats=1, warmup=1)
    assert {(r.variant, r.mode) for r in rows} == set(seen)
    for (variant, mode), names in seen.items():
        if mode == "compile":
            assert not [n for n in names if "cpp_fused" in n], (variant, names)
    # while the profiled copies do name their kernels (the trained upsampler's shuffle)
    assert next(r for r in rows if r.variant == "trained" and r.mode == "compile").upsampler_ms


def test_each_mode_is_timed_in_a_block_of_its_own(monkeypatch):
    """A program runs a model eager or compiled, not both by turns: the trained and converted
    model of one mode are interleaved with each other only, every round of the block."""
    blocks = []
    real = M.interleaved_times

    def spy(variants, repeats, **kwargs):
        blocks.append((sorted(variants), repeats))
        return real(variants, repeats, **kwargs)

    monkeypatch.setattr(M, "interleaved_times", spy)
    spec = _tiny(M.MODELS["M1"].build, M.MODELS["M1"].upsampler_weight)
    times, *_ = M._timed_variants(spec, "revd2", 3, 1, lambda m: None)
    assert blocks == [([("converted", mode), ("trained", mode)], 3) for mode in M.MODES]
    assert {k: len(v) for k, v in times.items()} == {
        (v, m): 3 for v in ("trained", "converted") for m in M.MODES}


def test_the_lowest_process_is_a_target_of_its_own():
    def row(mode, pooled, each):
        return M.ModelRow("M1", "converted", mode, 1.0, 9, 1.0, None, None, 0.0,
                          paired_speedup=pooled, processes=len(each), process_paired=each)

    targets = M.evaluate_targets([row("eager", 1.04, [1.03, 1.05]),
                                  row("compile", 1.02, [1.03, 0.99, 1.02])])
    by_name = {t["target"]: t for t in targets}
    assert by_name["converted vs trained, compile (paired)"]["met"]
    lowest = by_name["converted vs trained, compile (paired, lowest process)"]
    assert lowest["value"] == 0.99 and not lowest["met"]
    assert by_name["converted vs trained, eager (paired, lowest process)"]["met"]
    # one process: its median is the pooled figure, no second row
    assert len(M.evaluate_targets([row("eager", 1.04, [1.04])])) == 1


def test_profiler_finds_the_upsampling_layer(espcn_rows):
    """Trained: the 32→9 conv and the shuffle (Inductor's kernel included); converted: the op."""
    for r in espcn_rows:
        assert r.upsampler_ms is not None and r.upsampler_ms > 0, r
        assert 0 < r.upsampler_share < 1, r


def test_upsampler_attribution_picks_only_its_events():
    class E:
        def __init__(self, name, shapes, us):
            self.name, self.input_shapes, self.self_cpu_time_total = name, shapes, us

    spec = M.MODELS["M1"]
    events = [E("aten::mkldnn_convolution", [[1, 64, 8, 8], [64, 64, 3, 3]], 500),
              E("aten::mkldnn_convolution", [[1, 32, 8, 8], [9, 32, 3, 3]], 300),
              E("aten::pixel_shuffle", [[1, 9, 8, 8]], 100),
              E("cpp_fused_pixel_shuffle_2", [], 50),
              E("upconv::deconv2d", [[1, 32, 8, 8], [32, 1, 9, 9]], 40),
              E("aten::relu", [[1, 64, 8, 8]], 10)]
    up, total = M._upsampler_ms(events, spec, calls=2)
    assert up == pytest.approx((300 + 100 + 50 + 40) / 2 / 1e3)
    assert total == pytest.approx(1000 / 2 / 1e3)


def test_srvgg_compact_converts_its_pixel_shuffle():
    model = M.SRVGGCompact(8, 2, 2).eval()
    x = torch.rand(1, 3, 6, 7)
    converted = M._converted(model, x, "revd2")
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-5, atol=1e-5)
    assert tuple(model(x).shape) == (1, 3, 12, 14)


def test_targets_and_markdown(espcn_rows):
    rows = [M.ModelRow(r.model.replace("T1", "M1"), r.variant, r.mode, r.ms, r.runs,
                       r.speedup, r.upsampler_ms, r.upsampler_share, r.max_abs_error)
            for r in espcn_rows]
    targets = M.evaluate_targets(rows)
    assert {t["target"] for t in targets} == {
        "converted vs trained, eager (paired)", "converted vs trained, compile (paired)",
        "upsampling layer inside the compiled model vs its trained form (profiler)"}
    for t in targets:
        assert t["met"] == (t["value"] >= t["goal"])
    converted = {r.mode: r for r in rows if r.variant == "converted"}
    for t in targets:
        if "(paired)" in t["target"]:
            mode = t["target"].split(", ")[1].split()[0]
            assert t["value"] == round(converted[mode].paired_speedup, 3)
    res = M.ModelResults({"date_utc": "2026-01-01T00:00:00Z", "cpu": "x", "logical_cpus": 2,
                          "threads": 1, "torch": "t", "numba": "n", "upconv": "u",
                          "load_average": None}, "revd2", 2, rows, targets=targets)
    text = M.markdown(res)
    assert "| M1 | converted | compile |" in text and "defaults (nothing set)" in text


def test_cli_models_bad_ids_and_writes(tmp_path, monkeypatch):
    runner = CliRunner()
    res = runner.invoke(main, ["bench", "--models", "M9"])
    assert res.exit_code != 0 and "M9 is not a model id" in res.output
    res = runner.invoke(main, ["bench", "--models", "M1", "--algorithm", "fast"])
    assert res.exit_code != 0 and "algorithm must be one of" in res.output
    tiny = _tiny(M.MODELS["M1"].build, M.MODELS["M1"].upsampler_weight, (1, 1, 8, 8))
    monkeypatch.setitem(M.MODELS, "M1", M.ModelSpec("M1", "tiny ESPCN", tiny.build,
                                                    tiny.shape, tiny.upsampler_weight))
    res = runner.invoke(main, ["bench", "--models", "m1", "--repeats", "1", "--threads", "1",
                               "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "models.json").read_text())
    assert {r["variant"] for r in data["rows"]} == {"trained", "converted"}
    assert (tmp_path / "models.md").read_text().startswith("# upconv whole-model benchmark")


def test_rounds_from_other_processes_are_pooled(monkeypatch, capsys):
    """The worker a fresh process runs prints its times as one JSON line; rounds from other
    processes pool into the converted rows' paired figures."""
    tiny = _tiny(M.MODELS["M1"].build, M.MODELS["M1"].upsampler_weight, (1, 1, 8, 8))
    monkeypatch.setitem(M.MODELS, "T1", tiny)
    before = torch.get_num_threads()
    try:  # the worker sets the thread count of its process: restore this one's
        M._main(["T1", "revd2", "3", "1", "5", "1"])
    finally:
        torch.set_num_threads(before)
    raw = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(raw) == {"trained/eager", "trained/compile", "converted/eager",
                        "converted/compile"} and all(len(v) == 3 for v in raw.values())
    other = {tuple(k.split("/")): v for k, v in raw.items()}
    rows = M.measure_model(tiny, "revd2", repeats=3, warmup=1, more_rounds=[other, other])
    for r in rows:
        if r.variant == "converted":
            assert r.processes == 3 and len(r.process_paired) == 3
            assert r.process_paired[1] == r.process_paired[2]
        else:
            assert r.process_paired is None and r.paired_speedup == 1.0
    assert "per process" in M.markdown(M.ModelResults(
        {"date_utc": "d", "cpu": "x", "logical_cpus": 2, "threads": 1, "torch": "t",
         "numba": "n", "upconv": "u", "load_average": None}, "revd2", 3, rows, processes=3))


def test_a_failing_worker_process_is_reported(monkeypatch):
    class Done:
        returncode, stdout, stderr = 1, "", "Traceback ...\nKeyError: 'M9'"

    monkeypatch.setattr(M.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(RuntimeError, match=r"(?s)M9 in a new process failed .*KeyError"):
        M.time_in_new_process("M9", "revd2", 3, 1, 1)
    with pytest.raises(ValueError, match="at least 1"):
        M.run_models(["M1"], processes=0)


def test_cli_processes_goes_with_models():
    res = CliRunner().invoke(main, ["bench", "--processes", "3", "--quick"])
    assert res.exit_code != 0 and "--processes goes with --models" in res.output


def test_breakdown_splits_a_call_after_the_trunks_last_convolution():
    from upconv.bench.breakdown import _split

    trained = [("conv(64, 1)", 1.0), ("relu", 2.0), ("conv(9, 32)", 4.0), ("shuffle", 8.0)]
    assert _split(trained, "conv(9, 32)") == (1.0, 14.0)
    converted = [("conv(64, 1)", 1.0), ("conv(32, 64)", 2.0), ("relu", 4.0),
                 ("upconv::deconv2d", 8.0)]
    assert _split(converted, "conv(9, 32)") == (3.0, 12.0)


def test_breakdown_times_the_kernels_of_both_compiled_graphs():
    """The diagnostic wraps what Inductor's generated code calls: a PyTorch that generates
    its code differently fails here, not in a user's hands."""
    from upconv.bench.breakdown import breakdown

    spec = _tiny(M.MODELS["M1"].build, M.MODELS["M1"].upsampler_weight)
    got = breakdown(spec, rounds=2)
    trained, converted = got["trained"]["calls"], got["converted"]["calls"]
    assert trained.count("conv(9, 32, 3, 3)") == 1 and "upconv::deconv2d" not in trained
    assert converted.count("upconv::deconv2d") == 1 and "conv(9, 32, 3, 3)" not in converted
    for calls in (trained, converted):  # the trunk's convolutions and Inductor's kernels
        assert [c for c in calls if c.startswith("conv(")][:3] == [
            "conv(64, 1, 5, 5)", "conv(64, 64, 3, 3)", "conv(32, 64, 3, 3)"]
        assert any(c.startswith("cpp_fused") for c in calls)
    for variant in ("trained", "converted"):
        v = got[variant]
        assert v["trunk"] > 0 and v["tail"] > 0 and v["rest"] >= 0
        assert v["total"] >= v["trunk"]
    assert got["paired"]["converted"] > 0


def test_breakdown_rejects_bad_arguments(capsys):
    from upconv.bench.breakdown import breakdown, main

    with pytest.raises(ValueError, match="rounds must be at least 1"):
        breakdown(M.MODELS["M1"], 0)
    for argv in (["M1", "--rounds", "0"], ["M1", "--processes", "-1"], ["M9"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_a_kept_memory_worker_keeps_freed_memory_first(monkeypatch, capsys):
    from upconv.sr import allocator

    tiny = _tiny(M.MODELS["M1"].build, M.MODELS["M1"].upsampler_weight, (1, 1, 8, 8))
    monkeypatch.setitem(M.MODELS, "T1", tiny)
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    before = torch.get_num_threads()
    try:
        M._main(["T1", "revd2", "2", "1", "5", "1", M.KEPT_FLAG])
    finally:
        torch.set_num_threads(before)
    assert calls == [1]
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == 4
    with pytest.raises(SystemExit, match="unknown worker flags"):
        M._main(["T1", "revd2", "2", "1", "5", "1", "--fast"])
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: False)
    with pytest.raises(SystemExit, match="needs glibc's mallopt"):
        M._main(["T1", "revd2", "2", "1", "5", "1", M.KEPT_FLAG])
    seen = []

    class Done:
        returncode, stderr = 0, ""
        stdout = json.dumps({"trained/eager": [1.0]})

    monkeypatch.setattr(M.subprocess, "run", lambda cmd, **k: seen.append(cmd) or Done())
    M.time_in_new_process("M1", "revd2", 3, 1, 1, keep_freed=True)
    M.time_in_new_process("M1", "revd2", 3, 1, 1)
    assert seen[0][-1] == M.KEPT_FLAG and M.KEPT_FLAG not in seen[1]


def test_kept_memory_rows_pool_their_processes_and_set_no_target(espcn_rows):
    def rounds(scale):
        return {("trained", "eager"): [2.0, 2.2, 2.4], ("converted", "eager"): [1.0, 1.1, 1.2],
                ("trained", "compile"): [scale * 1.0] * 3, ("converted", "compile"): [1.0] * 3}

    rows = M.kept_rows("T1", [rounds(1.5), rounds(1.1)], espcn_rows)
    assert [(r.variant, r.mode) for r in rows] == [
        ("trained", f"eager, {M.KEPT}"), ("converted", f"eager, {M.KEPT}"),
        ("trained", f"compile, {M.KEPT}"), ("converted", f"compile, {M.KEPT}")]
    eager, compiled = rows[1], rows[3]
    assert eager.paired_speedup == pytest.approx(2.0) and eager.ms == pytest.approx(1100)
    assert compiled.process_paired == pytest.approx([1.5, 1.1]) and compiled.processes == 2
    assert rows[0].ms == pytest.approx(2200) and rows[0].paired_speedup == 1.0
    errors = {(r.variant, r.mode): r.max_abs_error for r in espcn_rows}
    assert compiled.max_abs_error == errors["converted", "compile"]
    # the targets read the default rows only
    targets = M.evaluate_targets(list(espcn_rows) + rows)
    assert not any(M.KEPT in t["target"] for t in targets)
    assert len([t for t in targets if "(paired)" in t["target"]]) == 2
    doc = M.markdown(M.ModelResults(
        {"date_utc": "d", "cpu": "x", "logical_cpus": 2, "threads": 1, "torch": "t",
         "numba": "n", "upconv": "u", "load_average": None}, "revd2", 3,
        list(espcn_rows) + rows, processes=1, kept_processes=2))
    assert f"compile, {M.KEPT}" in doc and "keep_freed_memory()" in doc
    with pytest.raises(ValueError, match="kept_processes"):
        M.run_models(["M1"], kept_processes=-1)


def test_cli_kept_processes_goes_with_models():
    res = CliRunner().invoke(main, ["bench", "--kept-processes", "2", "--quick"])
    assert res.exit_code != 0 and "--kept-processes goes with --models" in res.output


def test_breakdown_rounds_run_in_orders_of_their_own(monkeypatch):
    """Neither graph always runs right after the other (it would start on the other's freed
    buffers every round)."""
    from upconv.bench import breakdown as bd

    log: list[str] = []

    def fake_compile(model, x, recorder):
        name = "converted" if any(isinstance(m, upconv.Deconv2d) for m in model.modules()) \
            else "trained"
        return lambda x: (log.append(name), recorder.calls[-1].append(("conv(1)", 1e-6)))

    monkeypatch.setattr(bd, "_compile_instrumented", fake_compile)
    spec = _tiny(M.MODELS["M1"].build, M.MODELS["M1"].upsampler_weight)
    bd.breakdown(spec, rounds=12, seed=3)
    rounds = [tuple(log[i : i + 2]) for i in range(0, len(log), 2)]
    assert len(rounds) == 14 and all(sorted(r) == ["converted", "trained"] for r in rounds)
    assert {r[0] for r in rounds} == {"trained", "converted"}
