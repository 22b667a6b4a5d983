"""The GPU suite's logic on the CPU: energy arithmetic with a fake counter, targets, the
report, a dry run of the phases, the CLI, and the imports the GPU machine can satisfy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from upconv.bench import energy, gpu_suite
from upconv.bench.gpu_report import explain_energy
from upconv.cli.bench import bench

SRC = Path(__file__).parent.parent / "src"


class FakeBoard:
    """A board drawing ``idle`` W plus ``per_call`` mJ per call, with its own clock; the
    counter only moves in whole ``resolution`` mJ steps (NVML's counter is coarse)."""

    def __init__(self, idle: float = 60.0, per_call: float = 0.5, call_s: float = 1e-3,
                 resolution: float = 1.0) -> None:
        self.t, self.energy = 0.0, 0.0
        self.idle, self.per_call, self.call_s, self.resolution = idle, per_call, call_s, resolution
        self.calls = 0

    def call(self) -> None:
        self.calls += 1
        self.advance(self.call_s)
        self.energy += self.per_call

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.energy += self.idle * seconds * 1e3

    def millijoules(self) -> float:
        return self.energy // self.resolution * self.resolution

    def clock(self) -> float:
        return self.t


def test_energy_per_call_and_above_idle():
    board = FakeBoard()
    idle = energy.idle_power(board, 2.0, sleep=board.advance, clock=board.clock)
    assert idle == pytest.approx(60.0, rel=1e-3)
    reading = energy.measure_energy(board.call, board, lambda: None, min_seconds=1.0,
                                    idle_watts=idle, clock=board.clock, batch=100)
    assert reading.calls >= 1000 and reading.calls % 100 == 0
    assert reading.seconds == pytest.approx(reading.calls * 1e-3)
    # 60 W for 1 ms is 60 mJ = 60,000 µJ per call, plus 500 µJ the call adds
    assert reading.uj_per_call == pytest.approx(60_500, rel=1e-3)
    assert reading.uj_per_call_above_idle == pytest.approx(500, rel=0.05)
    assert reading.watts == pytest.approx(60.5, rel=1e-3)
    assert energy.EnergyReading(10, 1.0, 5.0).uj_per_call_above_idle is None


def test_energy_batches_are_sized_from_a_timed_call():
    board = FakeBoard(call_s=1e-4)
    reading = energy.measure_energy(board.call, board, lambda: None, min_seconds=0.2,
                                    clock=board.clock)
    assert reading.calls % 500 == 0 and reading.seconds >= 0.2  # 0.05 s / 0.1 ms per batch


def test_nvml_absent_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "nvidia-ml-py" in energy.nvml_unavailable_reason()


def rows_for(layer, dtype, times, ok=True):
    return [{"layer": layer, "dtype": dtype, "function": "SP" if "SP" in case or "pixel" in
             case else "NN", "case": case, "ms": ms, "ok": ok} for case, ms in times.items()]


def test_targets_from_measured_rows():
    rows = rows_for("G1", "fp16", {
        "cuDNN conv+pixel_shuffle (NCHW)": 0.30, "cuDNN conv+pixel_shuffle (channels_last)": 0.26,
        "upconv revd2 (D-SP)": 0.10, "upconv auto (D-SP)": 0.11, "upconv tdc (D-SP)": 0.3,
        "cuDNN interpolate(nearest)+conv": 1.8, "conv_transpose2d (D-NN weights)": 0.3,
        "upconv revd2 (D-NN)": 0.2, "conv_transpose2d (D-SP weights)": 0.05})
    rows += rows_for("G3", "fp16", {"cuDNN conv+pixel_shuffle (NCHW)": 1.0,
                                    "upconv revd2 (D-SP)": 0.5}, ok=False)  # wrong outputs
    res = {"rows": rows, "copy_bandwidth_gbs": 3000.0, "io_bytes": {"G1 fp16": 149_299_200},
           "energy": {"rows": [
               {"layer": "G1", "case": "C-SP cuDNN (NCHW)", "op": "C-SP", "uj_per_call": 90.0},
               {"layer": "G1", "case": "REVD2 Triton (D-SP)", "op": "D-SP", "uj_per_call": 45.0},
               {"layer": "G1", "case": "REVD2 Triton (D-SP, channels_last)", "op": "D-SP",
                "uj_per_call": 30.0},
           ]}}
    got = {(t["layer"], t["target"]): t for t in gpu_suite.evaluate_gpu_targets(res)}
    t = got["G1", "D-SP revd2 vs best cuDNN C-SP (each its faster input layout)"]
    assert t["value"] == 2.6 and t["goal"] == 2.0 and t["met"]
    assert got["G1", "D-NN revd2 vs cuDNN resize-conv"]["value"] == 9.0
    assert got["G1", "D-NN revd2 vs conv_transpose2d"]["value"] == 1.5
    assert not got["G1", "D-NN revd2 vs conv_transpose2d"]["met"]
    # the D-SP conv_transpose2d row leaves out the periodic bias: not a candidate of auto
    assert got["G1", "auto (D-SP) vs best candidate"]["value"] == pytest.approx(0.909, abs=1e-3)
    assert got["G1", "D-SP revd2 % of memory bound"]["value"] == pytest.approx(49.8, abs=0.1)
    assert got["G1", "energy per call: best C-SP / best REVD2 D-SP (> 1: REVD2 lower)"][
        "value"] == 3.0
    assert not any(layer == "G3" for layer, _ in got)  # unchecked outputs give no targets


def test_energy_explanation_counts_agreeing_orders():
    rows = [{"layer": "G1", "uj_per_call": a, "model_uj": b, "uj_per_call_above_idle": a / 2}
            for a, b in ((100, 30), (50, 20), (70, 10))]
    text = "\n".join(explain_energy(rows))
    assert "orders 2 of 3" in text  # 100 > 50 and 100 > 70 agree; 50 < 70 does not
    assert "Why they differ" in text


def test_device_slug():
    assert gpu_suite.device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_suite.device_slug("NVIDIA H200") == "nvidia-h200"


class WallBoard:
    """A counter at a steady 50 W of wall-clock time."""

    def __init__(self) -> None:
        import time

        self.clock, self.t0 = time.perf_counter, time.perf_counter()

    def millijoules(self) -> float:
        return (self.clock() - self.t0) * 50e3


def test_dry_run_of_the_phases(tmp_path, monkeypatch):
    """Eager and energy (fake counter) phases on the CPU with tiny layers, then the compile
    phase with ``torch.compile`` stubbed: every case checked right, files merged."""
    board = WallBoard()
    json_path, md_path = gpu_suite.run_gpu_suite(
        tmp_path, phases=("eager", "energy"), layers=("G4",), dtypes=("fp32",),
        repeats=2, device="cpu", scale=0.02, espcn=False, energy_seconds=0.01,
        counter=board, b2b_calls=2)
    res = json.loads(json_path.read_text())
    assert json_path.name == "gpu-cpu-dry-run.json" and md_path.is_file()
    assert {r["layer"] for r in res["rows"]} == {"G4"}
    assert len(res["rows"]) == 14 and all(r["ok"] for r in res["rows"]), [
        (r["case"], r["rel_error"], r["note"]) for r in res["rows"] if not r["ok"]]
    assert all(r["ms"] > 0 and r["runs"] == 2 for r in res["rows"])
    assert [r["case"] for r in res["energy"]["rows"]][:2] == ["C-SP cuDNN (NCHW)",
                                                              "C-SP cuDNN (channels_last)"]
    assert len(res["energy"]["rows"]) == 7 and res["energy"]["rows"][0]["model_uj"] > 0
    assert res["host"]["layer"] == "G4" and "CPU" in res["host"]["rows"]  # no kernel here
    assert res["phases"]["eager"].startswith("done") and res["phases"]["energy"].startswith(
        "done")
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    gpu_suite.run_gpu_suite(tmp_path, phases=("compile",), layers=("G4",), dtypes=("fp32",),
                            repeats=2, device="cpu", scale=0.02, compile_layers=("G4",),
                            espcn=True)
    res = json.loads(json_path.read_text())
    assert len(res["rows"]) == 14  # the eager rows stay
    assert {r["case"] for r in res["compile"]} >= {
        "torch.compile max-autotune C-SP (channels_last)", "upconv revd2 (D-SP)"}
    assert {r["mode"] for r in res["espcn"]} == {"compiled"} and all(
        r["ok"] for r in res["espcn"])
    compiled = [r for r in res["espcn"] if r["case"].endswith("(torch.compile)")]
    assert compiled and all(isinstance(r["kernels"], list) and r["kernels"] for r in compiled)
    text = md_path.read_text()
    for section in ("## Targets", "## Layers", "## torch.compile", "## ESPCN", "## Energy",
                    "### Compiled ESPCN: device time per call by kernel"):
        assert section in text


def test_cli_validates_gpu_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(bench, ["--layers", "G1", "--quick", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--device cuda" in result.output
    result = runner.invoke(bench, ["--device", "cuda", "--dry-run", "--dtypes", "fp8"])
    assert result.exit_code != 0 and "fp16, fp32, bf16" in result.output
    result = runner.invoke(bench, ["--device", "cuda", "--dry-run", "--layers", "H1"])
    assert result.exit_code != 0 and "not in the GPU suite" in result.output
    if not torch.cuda.is_available():
        result = runner.invoke(bench, ["--device", "cuda", "--out", str(tmp_path)])
        assert result.exit_code != 0 and "no CUDA device" in result.output


def test_gpu_machine_imports():
    """What the GPU machine lacks (platformdirs, tomli_w, qonnx, av, ray, spandrel) is not
    needed to import upconv, run the suite's modules, or find the autotune cache."""
    code = textwrap.dedent("""
        import os, sys, tempfile

        class Missing:
            names = {"platformdirs", "tomli_w", "qonnx", "av", "ray", "spandrel"}
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in self.names:
                    raise ImportError(f"{name} is blocked for this test")

        sys.meta_path.insert(0, Missing())
        os.environ.pop("UPCONV_CACHE_DIR", None)
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
        import upconv, upconv.sr, upconv.convert
        from upconv import autotune
        from upconv.bench import energy, gpu_report, gpu_suite
        from upconv.cli import bench
        from upconv.cost import count, estimate, load_profile
        from upconv.kernels import triton_revd2, triton_tune

        path = autotune.cache_path()
        assert str(path).startswith(os.environ["XDG_CACHE_HOME"]), path
        from upconv.cost.profiles import available_profiles
        assert "horowitz-45nm" in available_profiles()
        c = count("C-SP", in_channels=32, out_channels=1, kernel_size=3, scale=2,
                  height=8, width=8, dtype="float16")
        assert estimate(c, load_profile("horowitz-45nm")).energy_j > 0
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"


def test_kernel_breakdown_names_where_a_calls_time_goes():
    x, w = torch.rand(1, 3, 32, 32), torch.rand(8, 3, 3, 3)
    got = gpu_suite.kernel_breakdown(lambda: torch.nn.functional.conv2d(x, w).relu(),
                                     torch.device("cpu"), calls=4, top=3)
    assert isinstance(got, list) and 0 < len(got) <= 3
    assert any("conv" in k["name"] for k in got)
    assert all(k["us_per_call"] > 0 and k["count_per_call"] > 0 for k in got)
    broken = gpu_suite.kernel_breakdown(lambda: 1 / 0, torch.device("cpu"))
    assert broken.startswith("ZeroDivisionError")


def test_report_lists_compiled_kernels():
    from upconv.bench.gpu_report import _kernels

    rows = [{"model": "espcn-x2", "case": "converted revd2 (torch.compile)",
             "kernels": [{"name": "upconv|revd2", "us_per_call": 12.5, "count_per_call": 1}]},
            {"model": "espcn-x2", "case": "trained (torch.compile)", "kernels": "RuntimeError"},
            {"model": "espcn-x2", "case": "trained (eager)"}]
    text = "\n".join(_kernels(rows))
    assert "`upconv\\|revd2` | 12.50 | 1 |" in text and "not read: RuntimeError" in text
    assert "trained (eager)" not in text and _kernels(rows[2:]) == []


def test_host_costs_need_the_triton_kernel():
    from upconv.bench.gpu_host import host_costs
    from upconv.bench.zoo import Layer

    why = host_costs(Layer("T", "tiny", 4, 1, 2, 1, 8, 16), torch.float32, torch.device("cpu"))
    assert isinstance(why, str) and "CPU" in why


def test_sweep_grid_keeps_to_what_the_kernel_and_the_registers_allow():
    from upconv.bench.gpu_sweep import grid

    g3 = grid(4, cin=64, slots=256, shuffle=(2, 2))
    assert len(g3) == len(set(g3))
    assert {c.block_k for c in g3} == {16, 32}  # no 64-channel K step in float32
    assert {c.block_n for c in g3} == {32, 64, 128, 256}
    assert all(c.block_m * c.block_n <= 32768 and c.dot and c.flat for c in g3)
    assert {c.num_stages for c in g3} == {1, 2, 3, 4} and {c.num_warps for c in g3} == {4, 8}
    g2 = grid(2, cin=64, slots=48, shuffle=(4, 4))
    assert {c.block_k for c in g2} == {16, 32, 64} and max(c.block_n for c in g2) == 64
    # the shuffled store only where the block holds whole channels of 4 × 4 phases
    assert {c.block_n for c in g2 if c.shuffle} == {32, 64}
    assert not any(c.shuffle for c in grid(2, cin=32, slots=9, shuffle=None))
    g1 = grid(2, cin=32, slots=4, shuffle=(2, 2))
    assert {c.block_n for c in g1} == {16} and {c.block_k for c in g1} == {16, 32}


@pytest.mark.parametrize("argv, message", [
    (["--cases", "G9:fp16"], "unknown case"),
    (["--cases", "G1"], "LAYER:DTYPE"),
    (["--budget-s", "0"], "must be positive"),
])
def test_sweep_cli_rejects_bad_arguments(tmp_path, capsys, argv, message):
    from upconv.bench import gpu_sweep

    with pytest.raises(SystemExit) as e:
        gpu_sweep.main([str(tmp_path), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_sweep_without_cuda_points_to_the_dry_run(tmp_path, capsys):
    from upconv.bench import gpu_sweep

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    assert gpu_sweep.main([str(tmp_path), "--cases", "G1:fp16"]) == 2
    assert "--dry-run" in capsys.readouterr().err
