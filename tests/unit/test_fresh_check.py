"""The fresh-stream check: honest programs pass, programs that know the graded windows are named."""
from __future__ import annotations

import random

import pytest
import torch

from evaluator.baselines import forecast_lpt, vectorized_seed
from evaluator.scoring import fresh_check
from evaluator.scoring.fresh_check import MIN_GAIN, ScenarioScores, check, compare
from evaluator.scoring.metrics import placement_balancedness
from evaluator.workloads.scenarios import FRESH_WINDOWS, Scenario, suite


def noisy(count: int, mean: float, spread: float, seed: int) -> list[float]:
    """Gaussian scores whose mean is exactly `mean`, so that a test's gain is exactly what it sets."""
    rng = random.Random(seed)
    draws = [rng.gauss(0.0, spread) for _ in range(count)]
    centre = sum(draws) / count
    return [mean + d - centre for d in draws]


def scores(name: str = "s", gain: float = 0.0, spread: float = 0.01, graded: int = 29, fresh: int = 15,
           seed: int = 0) -> ScenarioScores:
    """A program 0.02 above its reference everywhere, plus `gain` on the graded windows only."""
    graded_ref, fresh_ref = noisy(graded, 0.80, 0.03, seed), noisy(fresh, 0.80, 0.03, seed + 1)
    return ScenarioScores(
        name,
        graded=[r + 0.02 + gain + e for r, e in zip(graded_ref, noisy(graded, 0.0, spread, seed + 2))],
        graded_reference=graded_ref,
        fresh=[r + 0.02 + e for r, e in zip(fresh_ref, noisy(fresh, 0.0, spread, seed + 3))],
        fresh_reference=fresh_ref)


def test_lucky_graded_windows_pass() -> None:
    """A gain of about two standard errors on one scenario is what a fixed window set's luck gives."""
    lucky = scores("s0", gain=0.007)
    assert 1.5 < compare(lucky).z < 3 and compare(lucky).gain > MIN_GAIN
    assert check([lucky] + [scores(f"s{i}", seed=i) for i in range(1, 4)]) is None


def test_a_program_better_on_the_graded_windows_is_named_with_both_figures() -> None:
    reason = check([scores("deepseek-v3-prefill", gain=0.1), scores("qwen3-30b-a3b", seed=5)])
    assert reason is not None and "\n" not in reason
    comparison = compare(scores("deepseek-v3-prefill", gain=0.1))
    assert reason.startswith(f"deepseek-v3-prefill: balancedness {comparison.graded:.3f} on the graded windows but "
                             f"{comparison.fresh:.3f} on fresh windows of the same workload (+0.100 beside the "
                             "seed's placements on the same windows, ")
    assert reason.endswith("the program knows (or is fitted to) the graded windows")


def test_the_reference_removes_what_every_placement_shares() -> None:
    """Graded windows that are easier for every placement are not the program's doing."""
    easy = scores(spread=0.002)
    lifted = ScenarioScores("s", [g + 0.05 for g in easy.graded], [r + 0.05 for r in easy.graded_reference],
                            easy.fresh, easy.fresh_reference)
    assert compare(lifted).gain == pytest.approx(compare(easy).gain)
    assert check([lifted]) is None


def test_a_significant_but_negligible_gain_passes() -> None:
    tiny = scores(gain=MIN_GAIN * 0.8, spread=0.0001)
    assert compare(tiny).z > fresh_check.Z_LIMIT
    assert check([tiny]) is None


def test_a_small_gain_on_every_scenario_is_caught_together() -> None:
    spread = [scores(f"s{i}", gain=0.012, seed=10 * i) for i in range(4)]
    assert all(not compare(s).flagged for s in spread)
    reason = check(spread)
    assert reason.startswith("all 4 scenarios together: balancedness ") and "of the same workloads (" in reason


def test_runs_of_alike_scores_widen_the_error() -> None:
    """Scores that come in runs (a program ignoring its input follows the slow drift) carry less information."""
    runs = [0.01 * ((i // 5) % 2) for i in range(20)]
    alternating = [0.01 * (i % 2) for i in range(20)]  # the same values, no runs
    zeros = [0.0] * 20
    in_runs = compare(ScenarioScores("s", runs, zeros, runs, zeros))
    independent = compare(ScenarioScores("s", alternating, zeros, alternating, zeros))
    assert in_runs.error > 1.5 * independent.error


def test_means_compare_equal_positions_and_the_spread_uses_every_fresh_window() -> None:
    """Stateful programs warm up along a stream: the mean skips fresh windows past the graded stream's length."""
    short = scores(graded=11, fresh=11)
    longer = ScenarioScores("s", short.graded, short.graded_reference, list(short.fresh) + [0.0] * 5,
                            list(short.fresh_reference) + [0.5] * 5)
    assert (compare(longer).gain, compare(longer).fresh) == (compare(short).gain, compare(short).fresh)
    assert compare(longer).error > 2 * compare(short).error


def test_too_few_windows_give_no_verdict() -> None:
    assert compare(ScenarioScores("s", [0.9], [0.5], [0.5], [0.5])) is None
    assert check([ScenarioScores("s", [0.9], [0.5], [0.5], [0.5])]) is None


def test_program_and_reference_scores_must_pair_up() -> None:
    with pytest.raises(ValueError, match="3 program scores but 2 reference scores"):
        compare(ScenarioScores("s", [0.8] * 3, [0.8] * 2, [0.8] * 3, [0.8] * 3))


# -- in process, on a real workload -------------------------------------------------------------

def next_window_scores(program, windows: torch.Tensor, scenario: Scenario, knows_next: bool = False) -> list[float]:
    """The evaluator's order: a reversed warm-up window, then window i fitted, scored on i + 1.

    `knows_next` fits on window i + 1 itself: what a program that regenerates the graded windows can do.
    """
    s = scenario.shape
    forecast_lpt.reset_history()
    program(windows[0].flip(-1).contiguous(), s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus)
    result = []
    for i in range(windows.shape[0] - 1):
        fit = windows[i + 1] if knows_next else windows[i]
        phy2log, _, logcnt = program(fit, s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus)
        result.append(placement_balancedness(windows[i + 1], phy2log, logcnt, s.num_gpus)[0])
    return result


@pytest.fixture(scope="module")
def small_workload() -> tuple[Scenario, torch.Tensor, torch.Tensor, list[float], list[float]]:
    scenario = suite("quick")[1]  # 12 x 128: a few milliseconds a call
    graded, fresh = scenario.search_windows(), scenario.fresh_windows(nonce=2024, count=FRESH_WINDOWS)
    reference = vectorized_seed.rebalance_experts
    return (scenario, graded, fresh, next_window_scores(reference, graded, scenario),
            next_window_scores(reference, fresh, scenario))


@pytest.mark.parametrize("honest", [forecast_lpt.rebalance_experts, vectorized_seed.rebalance_experts])
def test_an_honest_program_passes_on_the_published_windows(small_workload, honest) -> None:
    scenario, graded, fresh, graded_ref, fresh_ref = small_workload
    measured = ScenarioScores(scenario.name, next_window_scores(honest, graded, scenario), graded_ref,
                              next_window_scores(honest, fresh, scenario), fresh_ref)
    assert check([measured]) is None


def test_a_program_that_knows_the_graded_windows_is_invalid(small_workload) -> None:
    scenario, graded, fresh, graded_ref, fresh_ref = small_workload
    program = vectorized_seed.rebalance_experts
    measured = ScenarioScores(scenario.name, next_window_scores(program, graded, scenario, knows_next=True), graded_ref,
                              next_window_scores(program, fresh, scenario), fresh_ref)
    reason = check([measured])
    assert reason is not None and reason.startswith("qwen3-30b-a3b-12l: balancedness 0.99")


def test_only_graded_reference_scores_are_cached() -> None:
    from evaluator import fresh_stream
    from evaluator.workloads.scenarios import suite

    scenario = suite("quick")[1]
    graded = scenario.search_windows()[:4]
    fresh_stream._REFERENCE_CACHE.clear()
    first = fresh_stream.graded_reference_scores(scenario, graded)
    assert fresh_stream.graded_reference_scores(scenario, graded) is first and len(fresh_stream._REFERENCE_CACHE) == 1
    fresh = fresh_stream.fresh_windows(scenario)
    assert fresh is not None
    assert len(fresh_stream.reference_scores(scenario, fresh[:4])) == 3
    assert len(fresh_stream._REFERENCE_CACHE) == 1  # a fresh stream is never kept
