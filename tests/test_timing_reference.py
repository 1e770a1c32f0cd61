"""evaluator.timing_reference: one calibrated yardstick per machine and core set, measured once."""
from __future__ import annotations

import os

import pytest

from evaluator import json_cache, timing_reference
from evaluator.sandbox import CandidateFailure, CandidateProcess, Limits
from sandbox_support import program

CORE = (min(os.sched_getaffinity(0)),)


def test_calibrated_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with CandidateProcess(program("honest", tmp_path), Limits(cpus=CORE)) as candidate:
        candidate.start()
        first = timing_reference.reference_ms(candidate, CORE)
    assert 0.1 < first < 1000
    [(key, value)] = json_cache.load(timing_reference.CACHE).items()
    assert value == first and key.split("|")[1] == ",".join(map(str, CORE))
    closed = CandidateProcess(program("honest", tmp_path), Limits(cpus=CORE))  # never started
    assert timing_reference.reference_ms(closed, CORE) == first  # no yardstick run: from the cache
    with pytest.raises(CandidateFailure):  # another core set is calibrated afresh (and needs a keeper)
        timing_reference.reference_ms(closed, (CORE[0], 10_000))


def test_a_changed_yardstick_invalidates_the_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    json_cache.update(timing_reference.CACHE, {timing_reference._key(CORE): 2.0})
    assert timing_reference.reference_ms(CandidateProcess(program("honest", tmp_path)), CORE) == 2.0
    monkeypatch.setattr(timing_reference, "fingerprint", lambda: "another")
    assert timing_reference._key(CORE) not in json_cache.load(timing_reference.CACHE)
