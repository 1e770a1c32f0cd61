"""evaluator.timing.json_cache: per-machine figures that survive processes and never tear."""
from __future__ import annotations

import json
import multiprocessing
import os

from evaluator.timing import json_cache


def test_update_merges_and_load_reads_back(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert json_cache.load("figures.json") == {}
    json_cache.update("figures.json", {"a": 1.5})
    json_cache.update("figures.json", {"b": 2.5, "a": 3.0})
    assert json_cache.load("figures.json") == {"a": 3.0, "b": 2.5}
    assert json_cache.cache_path("figures.json") == tmp_path / "eplb-evolve" / "figures.json"
    assert list((tmp_path / "eplb-evolve").iterdir()) == [tmp_path / "eplb-evolve" / "figures.json"]


def test_a_corrupt_or_foreign_file_is_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = json_cache.cache_path("figures.json")
    path.parent.mkdir(parents=True)
    for text in ("{not json", "[1, 2]"):
        path.write_text(text)
        assert json_cache.load("figures.json") == {}
    json_cache.update("figures.json", {"a": 1})
    assert json_cache.load("figures.json") == {"a": 1}


def _writer(root: str, key: str) -> None:
    os.environ["XDG_CACHE_HOME"] = root
    for i in range(50):
        json_cache.update("figures.json", {key: i})


def test_concurrent_writers_never_leave_a_torn_file(tmp_path):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(tmp_path), f"w{n}")) for n in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    assert all(w.exitcode == 0 for w in writers)
    data = json.loads((tmp_path / "eplb-evolve" / "figures.json").read_text())  # parses: not torn
    assert set(data) <= {"w0", "w1", "w2"} and data  # last writer wins per key; nothing half-written
