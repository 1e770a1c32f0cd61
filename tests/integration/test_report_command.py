"""`eplb-evolve report RUN` on real run directories: figures, REPORT.md, held-out scores, the cache,
and runs that are still being written or were killed."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from test_compare_command import run_verb

from evaluator.baselines import BASELINES_DIR
from evaluator.evaluate import EvalOptions, evaluate
from evaluator.records import Evaluation
from evaluator.workloads.scenarios import suite
from harness.cli import report_command
from harness.config.settings import EvaluatorSettings, PopulationSettings, RunConfig, dump_toml
from harness.store.candidate import Candidate, code_hash
from harness.store.run_store import RunStore
from harness.store.status import Status

SEED_CODE = (BASELINES_DIR / "vectorized_seed.py").read_text()  # the seed's placements, fast to evaluate
FORECAST_CODE = (BASELINES_DIR / "forecast_lpt.py").read_text()
BROKEN_CODE = "def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):\n    return None\n"
CONFIG = RunConfig(evaluator=EvaluatorSettings(suite="quick", device="cpu"),
                   population=PopulationSettings(islands=2))
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def seed_evaluation() -> Evaluation:
    result = evaluate(Path(BASELINES_DIR / "vectorized_seed.py"), suite("quick"), "quick", EvalOptions(device="cpu"))
    assert result.valid, result.error
    return result


def program(cid: int, parents: tuple[int, ...], island: int, code: str, evaluation: Evaluation | None,
            name: str, iteration: int) -> Candidate:
    valid = evaluation is not None and evaluation.valid
    return Candidate(id=cid, parent_ids=parents, island=island, name=name, description=f"{name}.", code=code,
                     code_hash=code_hash(code), status=Status.VALID if valid else Status.INVALID, evaluation=evaluation,
                     model="test-model" if parents else "", prompt_tokens=100 * cid, completion_tokens=40 * cid,
                     cost=0.01 * cid, iteration=iteration, created_at=1_700_000_000.0 + 60 * iteration)


def better(seed: Evaluation, gain: float, speed: float) -> Evaluation:
    """The seed's evaluation with `gain` more balancedness and score, `speed` times faster."""
    return replace(seed, combined_score=seed.combined_score + gain, balancedness=seed.balancedness + gain,
                   runtime_ms=seed.runtime_ms / speed)


def make_run(path: Path, seed: Evaluation, children: bool = True) -> Path:
    """A seed, two children on two islands, their crossover (the best) and an invalid child."""
    with RunStore.create(path, dump_toml(CONFIG), program(0, (), 0, SEED_CODE, seed, "seed", 0)) as store:
        if not children:
            return path
        shrink = FORECAST_CODE.replace("SHRINK = 0.9", "SHRINK = 0.95")
        store.commit(program(1, (0,), 0, FORECAST_CODE, better(seed, 0.004, 1.5), "forecast_shrink", 1))
        store.append_journal({"attempt": 2, "status": "patch_failed", "prompt_tokens": 70, "cost": 0.5,
                              "timestamp": 1_700_000_120.0})
        store.commit(program(2, (0,), 1, SEED_CODE + "\nUNUSED = 1\n", better(seed, 0.001, 1.0), "tidy", 3))
        store.commit(program(3, (1, 2), 0, shrink, better(seed, 0.006, 2.0), "merged_shrink", 4))
        store.commit(program(4, (2,), 1, BROKEN_CODE, Evaluation.invalid(
            "window 0: returned None", "", device="cpu", sandbox="process", suite="quick", heldout=False),
            "returns_nothing", 5))
    return path


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory, seed_evaluation: Evaluation) -> tuple[Path, dict, int]:
    """A run reported once (--json, top 2): the run directory, the JSON printed and the exit code."""
    runs = tmp_path_factory.mktemp("runs")
    make_run(runs / "demo", seed_evaluation)
    out = io.StringIO()  # capsys is per test; a module fixture reads what run() prints itself
    with contextlib.redirect_stdout(out):
        code = run_verb(report_command, "report", "demo", "--runs-dir", runs, "--top", "2", "--json")
    return runs / "demo", json.loads(out.getvalue()), code


def test_report_writes_figures_and_markdown_into_the_run(reported: tuple[Path, dict, int]) -> None:
    run, printed, code = reported
    assert code == 0
    folder = run / "report"
    assert printed["report"] == str(folder / "REPORT.md")
    assert [Path(f).name for f in printed["figures"]] == ["progress.png", "pareto.png", "lineage.png"]
    for figure in printed["figures"]:
        data = Path(figure).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
    text = (folder / "REPORT.md").read_text()
    assert "- attempts (proposals tried): 5 (3 valid, 1 patch_failed, 1 invalid)" in text
    assert "- candidates evaluated (the seed excluded): 4, valid: 3 (75%)" in text
    assert "cost: $0.6000" in text and "(pauses between sessions included): 5.0 min" in text
    assert f"git -C {run} show refs/candidates/000003" in text and f"eplb-evolve show {run} 1" in text
    assert "show refs/candidates/000002" not in text  # not in the top 2
    assert 'suite = "quick"' in text and "islands = 2" in text
    assert "![Lineage of the best program, #3 merged_shrink](lineage.png)" in text


def test_top_programs_are_scored_on_heldout_windows_beside_the_seed_and_baselines(
        reported: tuple[Path, dict, int]) -> None:
    _, printed, _ = reported
    rows = {r["label"]: r for r in printed["rows"]}
    assert list(rows) == ["#3 merged_shrink", "#1 forecast_shrink", "#0 seed", "forecast_lpt (baseline)",
                          "migration_aware (baseline)", "vectorized_seed (baseline)"]
    for row in rows.values():
        assert row["heldout"]["valid"] and row["heldout"]["heldout"] and not row["search"]["heldout"]
    assert [r["candidate_id"] for r in printed["rows"]] == [3, 1, 0, None, None, None]
    # The same program measured once: candidate 1 is the forecast baseline, the seed the vectorised one.
    assert rows["#1 forecast_shrink"]["heldout"] == rows["forecast_lpt (baseline)"]["heldout"]
    assert rows["#0 seed"]["heldout"] == rows["vectorized_seed (baseline)"]["heldout"]
    # The baselines' search scores were measured here, on the run's suite (the candidates' come from the run).
    assert rows["vectorized_seed (baseline)"]["search"]["balancedness"] == pytest.approx(
        rows["#0 seed"]["search"]["balancedness"])
    assert rows["#3 merged_shrink"]["search"]["combined_score"] == pytest.approx(
        rows["#0 seed"]["search"]["combined_score"] + 0.006)


def test_the_report_folder_stays_out_of_git_and_a_second_report_reuses_the_evaluations(
        reported: tuple[Path, dict, int], capsys: pytest.CaptureFixture[str]) -> None:
    run, _, _ = reported
    assert subprocess.run(["git", "status", "--porcelain"], cwd=run, capture_output=True, text=True,
                          check=True).stdout == ""
    assert run_verb(report_command, "report", run, "--top", "2") == 0
    out, err = capsys.readouterr()
    assert "evaluating" not in err
    assert out.splitlines() == [f"wrote {run / 'report' / name}"
                                for name in ("REPORT.md", "progress.png", "pareto.png", "lineage.png")]


def test_a_run_being_written_or_killed_mid_line_is_reported(
        reported: tuple[Path, dict, int], seed_evaluation: Evaluation, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "live", seed_evaluation)
    shutil.copytree(reported[0] / "report", run / "report")  # the cache is keyed by suite and code, not run
    with RunStore.open(run) as writer:  # the search holds the run's lock
        writer.commit(program(5, (3,), 0, SEED_CODE + "\nX = 5\n", better(seed_evaluation, 0.01, 1.0),
                              "newest", 6))
        with open(run / "journal.jsonl", "a") as journal:
            journal.write('{"attempt": 7, "status": "pa')  # a writer killed mid-append
        assert run_verb(report_command, "report", run, "--no-heldout", "--top", "1") == 0
    err = capsys.readouterr().err
    assert err.count("evaluating") == 0
    text = (run / "report" / "REPORT.md").read_text()
    assert "- attempts (proposals tried): 6 (4 valid, 1 patch_failed, 1 invalid)" in text
    assert "| #5 `newest` | 0 | 6 |" in text
    assert "held-out" not in text.split("## Top programs")[1]


def test_a_run_with_only_its_seed_is_reported(seed_evaluation: Evaluation, tmp_path: Path,
                                              reported: tuple[Path, dict, int]) -> None:
    run = make_run(tmp_path / "fresh", seed_evaluation, children=False)
    shutil.copytree(reported[0] / "report", run / "report")
    assert run_verb(report_command, "report", run, "--no-heldout") == 0
    text = (run / "report" / "REPORT.md").read_text()
    assert "Only the seed so far." in text and "- attempts (proposals tried): 0 (none yet)" in text
    assert (run / "report" / "lineage.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("argv, message", [
    (["nowhere"], "unknown run 'nowhere'"),
    (["--top", "0", "x"], "--top 0: show at least one program"),
])
def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_verb(report_command, "report", "--runs-dir", tmp_path, *argv) == 2
    assert message in capsys.readouterr().err
