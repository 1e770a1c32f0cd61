"""The Pareto archive: valid candidates no other beats on both balancedness (max) and runtime (min).

Why keep it beside the scalar score: combined_score folds runtime in through a bounded factor,
so a program twice as fast but slightly less balanced sinks in the ranking. The archive keeps
such trade-offs visible, and the prompt shows some of them as diverse inspirations.
"""
from __future__ import annotations

from harness.store.candidate import Candidate


def _objectives(candidate: Candidate) -> tuple[float, float]:
    ev = candidate.evaluation
    assert ev is not None
    return ev.balancedness, -ev.runtime_ms


def _covers(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """a is at least as good as b on both objectives (equal points: the older one is kept)."""
    return a[0] >= b[0] and a[1] >= b[1]


class ParetoArchive:
    """The non-dominated set, updated one candidate at a time (it stays small: tens of members)."""

    def __init__(self) -> None:
        self._members: list[tuple[tuple[float, float], Candidate]] = []

    def add(self, candidate: Candidate) -> bool:
        """Offer a candidate; returns True if it joined (evicting those it dominates)."""
        if not candidate.valid:
            return False
        point = _objectives(candidate)
        if any(_covers(kept, point) for kept, _ in self._members):
            return False
        self._members = [(kept, c) for kept, c in self._members if not _covers(point, kept)]
        self._members.append((point, candidate))
        return True

    @property
    def members(self) -> list[Candidate]:
        """Members by balancedness, best first."""
        return [c for _, c in sorted(self._members, key=lambda m: (-m[0][0], m[1].id))]
