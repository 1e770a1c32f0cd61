"""The fresh-stream check (pure): is a program better on the windows it is graded on than on new ones?

A program that knows (regenerates, or carries) the windows it is graded on can fit its placement
to the window it will be scored on; one tuned to the published windows gets some of that too.
Neither can do it on windows nobody has seen. So every evaluation also scores the program on a
fresh stream of each scenario's workload (Scenario.fresh_windows: same deployment and traffic,
dynamics from a secret nonce) and this check compares the two.

The comparison is paired with a reference: the seed's placements (the vectorised seed), fitted
and scored on the same window pairs by the evaluator. Most of a window's score is how hard the
window is (how far it moved from the one before), which every placement shares; the program's
advantage over the reference window by window (`program - reference`) varies 1.6 to 4.5 times
less than its raw score (forecast_lpt on 40 fresh streams of each default-suite scenario), so the
same number of windows detects a 2 to 4 times smaller advantage. It also removes the luck of a fixed window set: the
published search windows of qwen3-235b-a22b are easier than the workload's average by 2 standard
errors for every program, which a raw comparison would charge to the program.

The test, per scenario: gain = mean advantage on the graded windows - mean advantage on the fresh
ones, over the fresh windows at the graded ones' positions only (stateful programs warm up along
a stream, and a stream's drift is calmer in its first windows, so a longer fresh stream's later
windows would not compare like with like). Its standard error comes from the pooled
within-stream variance of the advantage over every graded and fresh window (a 3-window held-out
set and 3 fresh windows once gave a spread 4 times too small, and a false alarm), inflated for
positive lag-1 autocorrelation as an AR(1) would ((1 + r) / (1 - r): programs that ignore their
input or sum a long history score in runs). The program is flagged when the gain exceeds MIN_GAIN
and Z_LIMIT standard errors, on one scenario or on all of them together (the mean gain over
scenarios, which catches a small advantage spread over every scenario).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Standard errors above which a graded-window advantage is not luck. Honest programs reached at
# most 3.7 in 1000 suite evaluations (default and quick, published and secret graded windows, 20
# fresh nonces); programs fitted on the window they are scored on, 8 to 42 at the least
# (bench/bench_fresh_check.py).
Z_LIMIT = 5.0
# Smallest gain (in GPU-level balancedness) worth calling cheating, whatever its significance.
MIN_GAIN = 0.005
_MAX_AUTOCORRELATION = 0.9  # caps the AR(1) inflation at 19x the variance


@dataclass(frozen=True)
class ScenarioScores:
    """Per-window next-window GPU-level balancedness of one scenario, in window order.

    `graded`: the program on the windows its score is made of; `fresh`: on a fresh stream of the
    same workload; `*_reference`: the reference placements on the same window pairs.
    """

    scenario: str
    graded: Sequence[float]
    graded_reference: Sequence[float]
    fresh: Sequence[float]
    fresh_reference: Sequence[float]


@dataclass(frozen=True)
class Comparison:
    """Graded against fresh for one scenario (or the suite): the figures a verdict is made of."""

    scenario: str
    graded: float  # the program's mean balancedness on the graded windows
    fresh: float  # ... on the fresh windows compared (fresh_balancedness)
    gain: float  # graded advantage over the reference minus fresh advantage
    error: float  # the gain's standard error

    @property
    def z(self) -> float:
        """The gain in standard errors (infinite for a gain without any spread)."""
        if self.error > 0:
            return self.gain / self.error
        return math.inf if self.gain > 0 else 0.0

    @property
    def flagged(self) -> bool:
        return self.gain > MIN_GAIN and self.z > Z_LIMIT


def compare(scores: ScenarioScores) -> Comparison | None:
    """The paired comparison of one scenario; None when there are too few windows to estimate a spread."""
    graded = _advantage(scores.graded, scores.graded_reference)
    fresh = _advantage(scores.fresh, scores.fresh_reference)
    matched = fresh[:len(graded)]
    if len(graded) + len(fresh) < 4 or not graded or not fresh:
        return None
    gain = statistics.fmean(graded) - statistics.fmean(matched)
    variance = _pooled_variance(graded, fresh) * _autocorrelation_inflation(graded, fresh)
    error = math.sqrt(variance * (1 / len(graded) + 1 / len(matched)))
    return Comparison(scores.scenario, statistics.fmean(scores.graded), statistics.fmean(scores.fresh[:len(graded)]),
                      gain, error)


def pooled(comparisons: Sequence[Comparison]) -> Comparison:
    """All scenarios together: mean figures and gain over scenarios (the suite's score is a mean too)."""
    count = len(comparisons)
    gain = statistics.fmean(c.gain for c in comparisons)
    error = math.sqrt(sum(c.error**2 for c in comparisons)) / count
    return Comparison(f"all {count} scenarios together", statistics.fmean(c.graded for c in comparisons),
                      statistics.fmean(c.fresh for c in comparisons), gain, error)


def check(scores: Sequence[ScenarioScores]) -> str | None:
    """None when the program scores alike on graded and fresh windows, else the one-line reason it is invalid."""
    comparisons = [c for c in map(compare, scores) if c is not None]
    flagged = [c for c in comparisons if c.flagged]
    if flagged:
        return _reason(max(flagged, key=lambda c: c.z), "workload")
    together = pooled(comparisons) if len(comparisons) > 1 else None
    if together is not None and together.flagged:
        return _reason(together, "workloads")
    return None


def _reason(worst: Comparison, workload: str) -> str:
    """The one line naming the scenario (or all of them) and both figures."""
    sigmas = "infinitely many" if math.isinf(worst.z) else f"{worst.z:.1f}"
    return (f"{worst.scenario}: balancedness {worst.graded:.3f} on the graded windows but {worst.fresh:.3f} on fresh "
            f"windows of the same {workload} ({worst.gain:+.3f} beside the seed's placements on the same windows, "
            f"{sigmas} standard errors): the program knows (or is fitted to) the graded windows")


def _advantage(program: Sequence[float], reference: Sequence[float]) -> list[float]:
    if len(program) != len(reference):
        raise ValueError(f"{len(program)} program scores but {len(reference)} reference scores")
    return [p - r for p, r in zip(program, reference)]


def _pooled_variance(*series: Sequence[float]) -> float:
    squares = sum(_sum_of_squares(s) for s in series)
    return squares / (sum(len(s) for s in series) - len(series))


def _sum_of_squares(values: Sequence[float]) -> float:
    mean = statistics.fmean(values)
    return sum((v - mean) ** 2 for v in values)


def _autocorrelation_inflation(*series: Sequence[float]) -> float:
    """(1 + r) / (1 - r), r the pooled lag-1 autocorrelation in [0, 0.9]: the variance factor of an AR(1) mean."""
    squares = sum(_sum_of_squares(s) for s in series)
    if squares <= 0:
        return 1.0
    lagged = 0.0
    for values in series:
        mean = statistics.fmean(values)
        lagged += sum((a - mean) * (b - mean) for a, b in zip(values, values[1:]))
    r = min(max(lagged / squares, 0.0), _MAX_AUTOCORRELATION)
    return (1 + r) / (1 - r)

