"""`eplb-evolve log / show / best` on a finished run (the offline run of test_run_command.py,
shared so the seed is evaluated once per test session)."""
from __future__ import annotations

import json
import subprocess

import pytest
from test_run_command import OfflineRun, cli, offline_run


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> OfflineRun:
    return offline_run(tmp_path_factory)


def metrics(run: OfflineRun, commit: str) -> dict:
    return json.loads(subprocess.run(["git", "show", f"{commit}:metrics.json"], cwd=run.path, check=True,
                                     capture_output=True, text=True).stdout)


def test_log_json_has_a_row_per_candidate_with_lineage_status_and_scores(offline):
    result = cli("log", offline.name, "--runs-dir", offline.runs, "--json")
    assert result.code == 0 and result.err == ""
    rows = json.loads(result.out)
    assert [row["id"] for row in rows] == list(range(len(rows))) and len(rows) >= 2
    for row in rows:
        assert {"id", "parent", "island", "status", "combined_score", "balancedness", "name"} <= set(row)
        meta = metrics(offline, row["commit"])
        assert (row["parent"], row["island"], row["status"], row["name"]) == \
            (meta["parent_ids"], meta["island"], meta["status"], meta["name"])
        if meta["evaluation"]["valid"]:  # the headline metrics, as the commit's evaluation has them
            assert all(row[k] == meta["evaluation"][k] for k in ("combined_score", "balancedness", "runtime_ms"))
        else:  # an invalid evaluation's numbers mean nothing: none are shown
            assert row["combined_score"] is row["balancedness"] is None and row["error"]
    assert rows[0]["parent"] == [] and rows[0]["name"] == "seed"
    assert all(row["parent"] for row in rows[1:])


def test_log_table_lists_every_candidate(offline):
    rows = json.loads(cli("log", offline.name, "--runs-dir", offline.runs, "--json").out)
    table = cli("log", str(offline.path), "--runs-dir", "/nonexistent")  # a path works as RUN too
    assert table.code == 0
    lines = table.out.strip().splitlines()
    assert len(lines) == len(rows) + 1 and lines[0].split()[:3] == ["id", "parent", "isl"]
    for row, line in zip(rows, lines[1:]):
        assert line.split()[0] == str(row["id"]) and f"  {row['name']}" in line


def test_show_prints_description_metrics_feedback_and_the_diff_against_the_parent(offline):
    rows = json.loads(cli("log", offline.name, "--runs-dir", offline.runs, "--json").out)
    child = next(row for row in rows[1:] if row["status"] == "valid")
    meta = metrics(offline, child["commit"])
    result = cli("show", offline.name, child["id"], "--runs-dir", offline.runs)
    assert result.code == 0
    text = result.out
    assert text.startswith(f"candidate {child['id']}: {child['name']}")
    assert meta["description"].strip() in text
    assert f"combined {meta['evaluation']['combined_score']:.4f}" in text
    assert meta["evaluation"]["feedback"].strip() in text
    parent = child["parent"][0]
    assert f"--- a/program.py (candidate {parent})" in text and f"+++ b/program.py (candidate {child['id']})" in text
    git_diff = subprocess.run(["git", "diff", f"{rows[parent]['commit']}", child["commit"], "--", "program.py"],
                              cwd=offline.path, check=True, capture_output=True, text=True).stdout
    added = [line for line in git_diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added and all(line in text.splitlines() for line in added)
    seed = cli("show", offline.name, "0", "--runs-dir", offline.runs).out
    assert "--- /dev/null" in seed and "+++ b/program.py (candidate 0)" in seed  # the seed: all added


def test_best_exports_the_best_program_which_evaluates_to_the_same_balancedness(offline, tmp_path):
    rows = json.loads(cli("log", offline.name, "--runs-dir", offline.runs, "--json").out)
    best_row = max((r for r in rows if r["status"] == "valid"), key=lambda r: (r["combined_score"], -r["id"]))
    export = tmp_path / "best.py"
    result = cli("best", offline.name, "--runs-dir", offline.runs, "--export", export, "--json")
    assert result.code == 0
    best = json.loads(result.out)
    assert best["id"] == best_row["id"] and best["program"] == export.read_text()
    assert export.read_text() == (offline.path / "program.py").read_text()

    # on the run's own windows: the same figure; on the published ones, another
    on_run = cli("eval", export, "--run", offline.name, "--runs-dir", offline.runs, "--no-speedup", "--json",
                 "--device", "cpu")
    assert on_run.code == 0, on_run.err
    assert json.loads(on_run.out)["balancedness"] == pytest.approx(best["balancedness"], abs=1e-9)
    published = cli("eval", export, "--suite", "quick", "--no-speedup", "--json", "--device", "cpu")
    assert json.loads(published.out)["balancedness"] != pytest.approx(best["balancedness"], abs=1e-9)


def test_best_export_to_an_unwritable_place_is_one_line(offline, tmp_path):
    result = cli("best", offline.name, "--runs-dir", offline.runs, "--export", tmp_path / "missing" / "dir" / "x.py")
    assert result.code == 2 and result.err.count("\n") == 1 and "cannot write" in result.err
