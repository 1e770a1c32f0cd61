"""`eplb-evolve compare`: one table for several programs, speedup against the first, baselines as anchors."""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
from candidate_factory import evaluation, failed

from evaluator.baselines import BASELINES_DIR, baseline_paths
from evaluator.errors import UserError
from evaluator.records import Evaluation, ScenarioResult
from harness.cli import compare_command
from harness.cli.compare_command import Entry
from seed_program import SEED_PATH

BASELINES = BASELINES_DIR
FAST = BASELINES / "vectorized_seed.py"  # the seed's placements at a few ms per call
FORECAST = BASELINES / "forecast_lpt.py"
BROKEN = ("def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):\n"
          "    raise RuntimeError('boom')\n")


def run_verb(module: ModuleType, *argv: object) -> int:
    """Drive one verb the way `harness.cli.main` does: parse, run, a UserError becomes exit 2 on stderr."""
    parser = argparse.ArgumentParser(prog="eplb-evolve")
    module.add_parser(parser.add_subparsers(dest="command", required=True))
    try:
        return module.run(parser.parse_args([str(a) for a in argv]))
    except UserError as error:
        print(f"eplb-evolve: error: {error}", file=sys.stderr)
        return 2


def timed(runtimes: dict[str, float]) -> Evaluation:
    """An evaluation with one scenario per entry of `runtimes` (name -> median ms)."""
    scenarios = tuple(ScenarioResult(name, {}, 0.9, 0.3, 0.95, 0.1, ms, 0.9) for name, ms in runtimes.items())
    return replace(evaluation(0.9), scenarios=scenarios)


def test_speedup_is_the_geometric_mean_of_per_scenario_ratios_against_the_reference() -> None:
    reference = timed({"a": 100.0, "b": 10.0})
    assert compare_command.speedup(reference, timed({"a": 25.0, "b": 10.0})) == pytest.approx(2.0)
    assert compare_command.speedup(reference, reference) == pytest.approx(1.0)
    assert compare_command.speedup(reference, failed()) is None
    assert compare_command.speedup(failed(), reference) is None


def test_baselines_add_the_seed_and_every_baseline_not_already_listed(tmp_path: Path) -> None:
    copy_of_seed = tmp_path / "mine.py"
    shutil.copy(SEED_PATH, copy_of_seed)
    listed = [FORECAST, copy_of_seed]
    assert compare_command.entries_for(listed, with_baselines=False) == [Entry(FORECAST, str(FORECAST)),
                                                                         Entry(copy_of_seed, str(copy_of_seed))]
    extra = compare_command.entries_for(listed, with_baselines=True)[2:]
    # the seed is listed (same bytes)
    assert [e.label for e in extra] == ["migration_aware (baseline)", "vectorized_seed (baseline)"]
    labels = [e.label for e in compare_command.entries_for([FAST], with_baselines=True)]
    assert labels == [str(FAST), "seed (baseline)", "forecast_lpt (baseline)", "migration_aware (baseline)"]
    assert {p.name for p in baseline_paths()} >= {"vectorized_seed.py", "forecast_lpt.py", "migration_aware.py"}


def test_table_marks_invalid_programs_and_gives_their_reason_below() -> None:
    rows = compare_command.compare([(Entry(Path("a.py"), "a.py"), timed({"s": 10.0})),
                                    (Entry(Path("b.py"), "b.py"), failed("window 3: logcnt is wrong"))])
    lines = compare_command.render_table(rows).splitlines()
    assert lines[0].startswith("suite: quick   device: cpu   sandbox: process   objective: balancedness   "
                               "speedup: vs a.py")
    assert lines[1].split() == ["program", "valid", "efficiency", "GPU", "bal", "fresh", "bal", "migrated",
                                "nodes/tok", "compute", "comm", "migration", "in-sample", "runtime", "ms", "speedup",
                                "combined"]
    # A record without deployment figures (written before they existed) shows dashes there.
    assert lines[3].split() == ["a.py", "yes", "-", "0.9000", "-", "-", "-", "-", "-", "-", "0.9500", "5.00",
                                "1.00", "0.9000"]
    assert lines[4].split() == ["b.py", "NO"] + ["-"] * 12
    assert lines[-1] == "b.py: INVALID: window 3: logcnt is wrong"


def test_candidate_text_in_the_table_cannot_draw_on_the_terminal() -> None:
    rows = compare_command.compare([(Entry(Path("a.py"), "a.py"), timed({"s": 10.0})),
                                    (Entry(Path("b.py"), "b.py"), failed("boom\x1b[2J\nvalid: yes 0.9990"))])
    last = compare_command.render_table(rows).splitlines()[-1]
    assert last == "b.py: INVALID: boom\\x1b[2J\\nvalid: yes 0.9990"


def test_compare_prints_a_json_list_and_exits_1_when_any_program_is_invalid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(BROKEN)
    code = run_verb(compare_command, "compare", FORECAST, FAST, broken, "--suite", "quick", "--device", "cpu",
                    "--json")
    assert code == 1
    out = json.loads(capsys.readouterr().out)
    assert [o["program"] for o in out] == [str(FORECAST), str(FAST), str(broken)]
    first, second, third = (o["evaluation"] for o in out)
    assert first["valid"] and second["valid"] and not third["valid"]
    assert "boom" in third["error"]
    assert out[0]["speedup"] == pytest.approx(1.0)
    ratios = [a["runtime_ms"] / b["runtime_ms"] for a, b in zip(first["scenarios"], second["scenarios"])]
    assert out[1]["speedup"] == pytest.approx(math.prod(ratios) ** (1 / len(ratios)))
    assert out[2]["speedup"] is None
    assert {s["name"] for s in first["scenarios"]} == {"deepseek-v3-prefill-quick", "qwen3-30b-a3b-12l"}
    assert not any(o["baseline"] for o in out)


def test_compare_prints_a_table_and_exits_0_when_all_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_verb(compare_command, "compare", FAST, "--suite", "quick", "--device", "cpu", "--heldout") == 0
    out, err = capsys.readouterr()
    assert out.startswith("suite: quick (held-out windows)")
    assert out.splitlines()[3].split()[:2] == [str(FAST), "yes"]
    assert "[1/1] evaluating" in err


@pytest.mark.parametrize("argv, message", [
    (["missing.py"], "missing.py: no such program file"),
    ([str(FAST), "--suite", "huge"], "unknown suite 'huge'"),
    ([str(FAST), "--threads", "0"], "--threads >= 1"),
])
def test_usage_errors_exit_2_before_anything_is_evaluated(argv: list[str], message: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run_verb(compare_command, "compare", *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "evaluating" not in err


def test_a_file_without_rebalance_experts_is_a_usage_error(tmp_path: Path) -> None:
    other = tmp_path / "notes.py"
    other.write_text("x = 1\n")
    assert run_verb(compare_command, "compare", FAST, other) == 2
    with pytest.raises(SystemExit) as exited:  # no PROGRAM at all: argparse's own usage error
        run_verb(compare_command, "compare")
    assert exited.value.code == 2
