"""algorithm="auto": tuned once per shape and thread count, cached on disk atomically."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import upconv
import upconv.functional as UF
from upconv import autotune
from upconv.functional import check_deconv


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path))
    autotune.clear_memory()
    yield tmp_path / autotune.CACHE_FILE
    autotune.clear_memory()


def small_call(requires_grad: bool = False, **kw):
    x = torch.randn(1, 3, 6, 20)
    w = torch.randn(3, 2, 6, 6, requires_grad=requires_grad)
    return check_deconv(x, w, torch.randn(2, 2, 2), 2, 2, **kw)


def test_auto_equals_conv_transpose2d_and_writes_the_cache(cache):
    x, w, b = torch.randn(2, 4, 7, 9), torch.randn(4, 3, 4, 4), torch.randn(3)
    y = upconv.deconv2d(x, w, b, 2, 1, algorithm="auto")
    torch.testing.assert_close(y, F.conv_transpose2d(x, w, b, 2, 1), rtol=1e-4, atol=1e-4)
    data = json.loads(cache.read_text())
    (key, entry), = data.items()
    assert key.startswith(autotune.version_key())
    assert f"threads={torch.get_num_threads()}" in key and "x=(2, 4, 7, 9)" in key
    assert entry["choice"] in autotune.candidates()
    assert set(entry["seconds"]) == {"revd2-numba", "tdc-torch", "tdc-torch-nhwc", "stdd-torch",
                                     "convtranspose-ort"}
    checked = entry.get(f"{autotune.KERNEL}/{autotune.pick(entry['seconds'])}")
    flipped = checked is not None and checked <= 1 + autotune.KERNEL_PREFERENCE
    assert entry["choice"] == (autotune.KERNEL if flipped else autotune.pick(entry["seconds"]))
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temp files left


def test_choice_is_reused_from_memory_and_disk(cache, monkeypatch):
    call = small_call()
    first = autotune.choose(call)

    def no_tuning(_call):
        raise AssertionError("re-tuned a cached shape")

    monkeypatch.setattr(autotune, "tune", no_tuning)
    assert autotune.choose(call) == first
    autotune.clear_memory()  # a new process: read back from disk
    assert autotune.choose(call) == first


def test_disk_choice_is_used_and_keys_separate_thread_counts(cache, monkeypatch):
    call = small_call()
    key = f"{autotune.version_key()}|{autotune.signature(call, torch.get_num_threads())}"
    cache.write_text(json.dumps({key: {"choice": "stdd-torch", "seconds": {}}}))
    assert autotune.choose(call) == "stdd-torch"
    assert autotune.signature(call, 1) != autotune.signature(call, 2)
    cl = check_deconv(call.x.to(memory_format=torch.channels_last), call.weight, call.bias, 2, 2)
    assert autotune.signature(cl, 2) != autotune.signature(call, 2)


def test_corrupt_or_stale_cache_is_retuned(cache, monkeypatch):
    cache.write_text("{not json")
    monkeypatch.setattr(autotune, "tune", lambda call: {"tdc-torch": 2.0, "stdd-torch": 1.0})
    assert autotune.choose(small_call()) == "stdd-torch"
    assert json.loads(cache.read_text())  # rewritten as valid JSON
    autotune.clear_memory()
    key = next(iter(json.loads(cache.read_text())))
    cache.write_text(json.dumps({key: {"choice": "no-such-path"}}))
    assert autotune.choose(small_call()) == "stdd-torch"


def test_autograd_calls_never_pick_the_inference_kernel(cache):
    call = small_call(requires_grad=True)
    assert "revd2-numba" not in autotune.eligible(call)
    assert autotune.choose(call) in {"tdc-torch", "tdc-torch-nhwc", "stdd-torch"}
    with torch.no_grad():
        assert "revd2-numba" in autotune.eligible(call)


def test_cache_dir_defaults_to_the_user_cache(monkeypatch):
    import platformdirs

    monkeypatch.delenv(autotune.CACHE_ENV, raising=False)
    assert autotune.cache_path().parent == type(autotune.cache_path().parent)(
        platformdirs.user_cache_dir("upconv"))


def test_time_candidates_warm_up_then_time_every_round():
    calls = {"a": 0, "b": 0}

    def make(name):
        def impl(*args):
            calls[name] += 1
            return args[0]
        return impl

    best = autotune.time_candidates({k: make(k) for k in calls}, small_call(), repeats=4)
    assert calls == {"a": 5, "b": 5}  # one warm-up + four timed rounds each
    assert set(best) == {"a", "b"} and all(0 < v < 1 for v in best.values())


@pytest.fixture
def fake_timed(monkeypatch):
    """``fake_timed({name: [seconds, ...]})``: candidates whose calls take those times, in
    order, on a clock that only they advance (sleeps return at once)."""
    now = [0.0]
    monkeypatch.setattr(autotune.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(autotune.time, "sleep", lambda s: None)

    def make(durations: dict[str, list[float]]) -> dict:
        left = {name: iter(times) for name, times in durations.items()}

        def impl_of(name):
            def impl(*args):
                now[0] += next(left[name])
                return torch.zeros(1)
            return impl

        return {name: impl_of(name) for name in durations}

    return make


def test_time_candidates_judge_by_the_median_round(fake_timed):
    # after a warm-up call each, "a" takes 1, 9, 9 s and "b" 5, 5, 5 s: medians 9 and 5
    impls = fake_timed({"a": [0.0, 1.0, 9.0, 9.0], "b": [5.0] * 4})
    got = autotune.time_candidates(impls, small_call(), repeats=3, budget_s=1e9)
    assert got == {"a": 9.0, "b": 5.0}


@pytest.mark.parametrize("kernel_s,ratio,want,rechecked", [
    (1.2, 0.9, "revd2-numba", True),   # close call, the kernel wins head to head
    (1.2, 1.2, "tdc-torch", True),     # close call, confirmed
    (2.0, 0.5, "tdc-torch", False),    # not close: no re-check
])
def test_close_calls_are_rechecked_head_to_head(cache, monkeypatch, kernel_s, ratio, want,
                                                rechecked):
    monkeypatch.setattr(autotune, "tune", lambda call: {autotune.KERNEL: kernel_s,
                                                        "tdc-torch": 1.0, "stdd-torch": 3.0})
    seen = []
    monkeypatch.setattr(autotune, "paired_ratio",
                        lambda a, b, call: seen.append((a, b)) or ratio)
    with torch.no_grad():
        assert autotune.choose(small_call()) == want
    impls = autotune.candidates()
    assert seen == ([(impls[autotune.KERNEL], impls["tdc-torch"])] if rechecked else [])
    entry = next(iter(json.loads(cache.read_text()).values()))
    assert entry["choice"] == want
    assert (f"{autotune.KERNEL}/tdc-torch" in entry) == rechecked


def test_paired_ratio_is_the_median_of_back_to_back_ratios(fake_timed):
    impls = fake_timed({"a": [1.0, 3.0, 1.0], "b": [2.0, 2.0, 2.0]})
    assert autotune.paired_ratio(impls["a"], impls["b"], small_call(), pairs=3) == 0.5


def test_pick_keeps_the_kernel_within_its_margin():
    k, margin = autotune.KERNEL, autotune.KERNEL_PREFERENCE
    assert autotune.pick({k: 1.0 + margin / 2, "tdc-torch": 1.0}) == k
    assert autotune.pick({k: 1.0 + 2 * margin, "tdc-torch": 1.0}) == "tdc-torch"
    assert autotune.pick({k: 0.5, "tdc-torch": 1.0}) == k
    assert autotune.pick({"stdd-torch": 0.5, "tdc-torch": 1.0}) == "stdd-torch"


def test_candidates_are_timed_with_the_conversion_to_the_operators_layout():
    """A candidate leaving channels_last output (TDC in NHWC) pays the copy to NCHW the
    operator makes on a CPU: what is timed is that (it once won L5 at 23 ms and ran 34)."""
    x = torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    call = UF.check_deconv(x, torch.randn(4, 3, 4, 4), None, 2, 1)

    def nhwc(*args):
        return torch.zeros(call.out_shape).contiguous(memory_format=torch.channels_last)

    assert not nhwc().is_contiguous()
    assert autotune.as_run(nhwc, call)().is_contiguous()
