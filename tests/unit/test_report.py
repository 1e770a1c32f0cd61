"""The report's data and Markdown, from small records: budget, progress, Pareto view, lineage, REPORT.md."""
from __future__ import annotations

from dataclasses import replace

import pytest
from candidate_factory import candidate, evaluation, failed

from harness.report import summary as report

# A seed, two children on two islands, a crossover of both (the best), an invalid child.
SEED = candidate(0, score=0.80, balancedness=0.85, runtime_ms=300.0)
A = candidate(1, (0,), score=0.84, island=0, balancedness=0.86, runtime_ms=20.0)
B = candidate(2, (0,), score=0.82, island=1, balancedness=0.88, runtime_ms=150.0, iteration=3)
BEST = candidate(3, (1, 2), score=0.86, island=0, balancedness=0.87, runtime_ms=10.0, iteration=5)
BROKEN = candidate(4, (2,), island=1, valid=False, iteration=6)
RUN = [SEED, A, B, BEST, BROKEN]


def journal_line(attempt: int, status: str, timestamp: float, tokens: int = 0, cost: float = 0.0) -> dict:
    return {"attempt": attempt, "status": status, "timestamp": timestamp, "prompt_tokens": tokens,
            "completion_tokens": tokens // 2, "cost": cost}


def test_budget_adds_candidates_the_journal_lost_and_spans_the_journal_timestamps() -> None:
    journal = [journal_line(0, "valid", 1000.0), journal_line(1, "valid", 1010.0, 100, 0.01),
               journal_line(2, "patch_failed", 1020.0, 80, 0.02), journal_line(3, "valid", 1030.0, 90, 0.03),
               journal_line(4, "duplicate", 1040.0, 70, 0.04)]
    # Candidates 3 (attempt 5) and 4 (attempt 6) were committed, then the writer was killed: no journal lines.
    b = report.budget(RUN, journal)
    assert b.attempts == 6
    assert b.statuses == {"valid": 3, "patch_failed": 1, "duplicate": 1, "invalid": 1}
    assert (b.candidates, b.valid, b.valid_rate) == (4, 3, 0.75)
    assert b.prompt_tokens == 100 + 80 + 90 + 70 + BEST.prompt_tokens + BROKEN.prompt_tokens
    assert abs(b.cost - (0.10 + BEST.cost + BROKEN.cost)) < 1e-12
    assert b.wall_s == BROKEN.created_at - 1000.0
    assert report.last_attempt(RUN, journal) == 6


def call_line(attempt: int, call: int, tokens: int, cost: float, timestamp: float) -> dict:
    return {"attempt": attempt, "kind": "call", "call": call, "prompt_tokens": tokens,
            "completion_tokens": tokens // 10, "cost": cost, "timestamp": timestamp}


def test_budget_counts_every_model_call_once_even_when_its_attempt_has_not_ended() -> None:
    journal = [journal_line(0, "valid", 1000.0),
               call_line(1, 1, 600, 0.01, 1001.0), call_line(1, 2, 400, 0.02, 1002.0),
               journal_line(1, "valid", 1003.0, 1000, 0.03),  # the outcome line repeats its calls' totals
               call_line(2, 1, 300, 0.05, 1004.0)]  # attempt 2 is still going, or was cut short
    b = report.budget([SEED, A], journal)
    assert (b.attempts, b.statuses, b.candidates) == (2, {"valid": 1, "unfinished": 1}, 1)
    assert (b.prompt_tokens, b.completion_tokens) == (1300, 130) and b.cost == pytest.approx(0.08)
    assert b.wall_s == 4.0


def test_a_run_with_only_its_seed_has_an_empty_budget() -> None:
    b = report.budget([SEED], [journal_line(0, "valid", 5.0)])
    assert (b.attempts, b.candidates, b.valid_rate, b.wall_s, b.statuses) == (0, 0, None, None, {})


def test_progress_runs_per_island_from_the_seed_and_skips_invalid_candidates() -> None:
    late = candidate(5, (1,), score=0.81, island=0, iteration=7)
    series = report.progress([*RUN, late], islands=3)
    assert [s.island for s in series] == [0, 1, 2]
    zero, one, two = series
    assert zero.attempts == (0, 1, 5, 7)
    assert zero.score == (0.80, 0.84, 0.86, 0.81)
    assert zero.best_score == (0.80, 0.84, 0.86, 0.86)
    assert zero.median_score == pytest.approx((0.80, 0.82, 0.84, 0.825))
    assert one.attempts == (0, 3)  # the invalid child on island 1 is not a point
    assert one.best_balancedness == (0.85, 0.88)
    assert two.attempts == (0,) and two.best_score == (0.80,)  # no child yet: the seed alone


def test_pareto_view_keeps_the_non_dominated_fastest_first_and_valid_anchors_only() -> None:
    baselines = [("fast (baseline)", evaluation(0.85, 0.86, runtime_ms=5.0)), ("broken (baseline)", failed())]
    view = report.pareto_view(RUN, baselines)
    assert [p.label for p in view.dots] == ["#0", "#1", "#2", "#3"]
    assert [p.label for p in view.front] == ["#3", "#2"]  # #1 (slower, less balanced than #3) and the seed lose
    assert view.seed is not None and view.seed.runtime_ms == 300.0
    assert view.best is not None and view.best.label == "#3"
    assert [p.label for p in view.anchors] == ["fast (baseline)"]


def test_lineage_is_the_first_parent_chain_with_crossover_mates_beside_it() -> None:
    child = candidate(5, (3, 1), score=0.9, iteration=7)  # a crossover whose mate is already on the chain
    lin = report.lineage([*RUN, child], 5)
    chain = [(n.id, n.layer) for n in lin.nodes if n.on_chain]
    assert chain == [(0, 0), (1, 1), (3, 2), (5, 3)]
    assert [(n.id, n.layer) for n in lin.nodes if not n.on_chain] == [(2, 1)]  # #3's mate, beside #1
    assert set(lin.edges) == {(0, 1), (1, 3), (2, 3), (3, 5), (1, 5)}
    assert report.lineage(RUN, 0).nodes == (report.LineageNode(0, SEED.name, SEED.score, 0, True),)


def _data(heldout: bool, rows: tuple[report.Row, ...]) -> report.ReportData:
    return report.ReportData(run="runs/my run", config_text="[run]\nseed = 3\n",
                             budget=report.budget(RUN, []), rows=rows,
                             figures=(("Progress", "progress.png"),), heldout=heldout, generated="today")


def test_markdown_sets_search_and_heldout_gains_over_the_seed_side_by_side() -> None:
    held = {0: evaluation(0.79, 0.84), 3: evaluation(0.80, 0.845), 1: failed("window 2: a replica is missing")}
    rows = tuple(report.Row(f"#{c.id} {c.name}", c, c.evaluation, held[c.id]) for c in (BEST, A, SEED))
    rows += (report.Row("forecast (baseline)", None, evaluation(0.85, 0.86), evaluation(0.85, 0.85)),)
    text = report.render_markdown(_data(True, rows))
    assert ("| #3 `variant_3` | 0 | 5 | 0.8600 | 0.8000 | 0.8700 | 0.8450 | +0.0200 | +0.0050 | - | - | - "
            "| 10.00 |") in text
    assert "| #1 `variant_1` | 0 | 1 | 0.8400 | - | 0.8600 | - | +0.0100 | - | - | - | - | 20.00 |" in text
    assert "| forecast (baseline) | - | - | 0.8500 | 0.8500 | 0.8600 | 0.8500 | +0.0100 | +0.0100 |" in text
    assert "- #1 variant_1: invalid on the held-out windows: window 2: a replica is missing" in text
    assert "Best so far: #3 `variant_3`, combined score 0.8600 against the seed's 0.8000 (+7.5%)." in text
    assert "git -C 'runs/my run' show refs/candidates/000003" in text
    assert "eplb-evolve show 'runs/my run' 1" in text
    assert "show refs/candidates/000000" not in text  # the seed is an anchor, not a change to look at
    assert "![Progress](progress.png)" in text
    assert "```toml\n[run]\nseed = 3\n```" in text
    assert "- candidates evaluated (the seed excluded): 4, valid: 3 (75%)" in text


def test_markdown_without_heldout_has_one_score_per_metric_and_says_when_only_the_seed_exists() -> None:
    text = report.render_markdown(_data(False, (report.Row("#0 seed", SEED, SEED.evaluation, None),)))
    assert ("| program | island | attempt | combined | balancedness | gain vs seed | efficiency | migrated "
            "| nodes/token | runtime ms |") in text
    assert "| #0 `variant_0` | 0 | 0 | 0.8000 | 0.8500 | +0.0000 | - | - | - | 300.00 |" in text
    assert "No valid candidate besides the seed yet" in text
    assert "Only the seed so far." in text
    assert "held-out" not in text.split("## Top programs")[1]


def test_markdown_says_when_the_seed_is_still_best_and_keeps_odd_names_out_of_the_table_syntax() -> None:
    worse = replace(candidate(5, (0,), score=0.7, iteration=7), name="split|merge")
    rows = tuple(report.Row(c.name, c, c.evaluation, None) for c in (SEED, worse))
    text = report.render_markdown(_data(False, rows))
    assert "No candidate beats the seed's combined score yet." in text
    assert "| #5 `split\\|merge` | 0 | 7 | 0.7000 |" in text
