"""evaluator.timing.timing_reference: one calibrated yardstick per machine, measured once."""
from __future__ import annotations

from evaluator.timing import json_cache, timing_reference


def _never() -> float:
    raise AssertionError("no yardstick run was needed")


def test_calibrated_from_the_first_evaluations_yardsticks_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert timing_reference.cached_reference_ms() is None
    assert timing_reference.reference_ms([3.0, 1.0, 2.0] * 10, _never) == 2.0  # the median of 30 samples
    assert list(json_cache.load(timing_reference.CACHE).values()) == [2.0]
    assert timing_reference.cached_reference_ms() == 2.0
    assert timing_reference.reference_ms([9.0] * 30, _never) == 2.0  # cached: later samples ignored


def test_too_few_samples_are_topped_up_with_more_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runs: list[float] = []

    def more() -> float:
        runs.append(4.0)
        return 4.0

    assert timing_reference.reference_ms([1.0] * 5, more) == 4.0
    assert len(runs) == timing_reference.MIN_SAMPLES - 5


def test_a_changed_yardstick_or_a_deleted_cache_is_calibrated_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert timing_reference.reference_ms([2.0] * 30, _never) == 2.0
    monkeypatch.setattr(timing_reference, "fingerprint", lambda: "another workload")
    assert timing_reference.reference_ms([3.0] * 30, _never) == 3.0
    json_cache.cache_path(timing_reference.CACHE).unlink()
    assert timing_reference.reference_ms([5.0] * 30, _never) == 5.0
