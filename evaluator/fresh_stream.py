"""The fresh-stream check's measurements: a program's and the reference's per-window scores on the
graded windows and on a fresh secret stream of the same workload (evaluator/scoring/fresh_check.py
decides; docs/workloads.md has the figures).

The reference is the seed's policy (`evaluator.baselines.vectorized_seed`, the seed's exact
placements at a few ms per call), run here in the evaluator's own trusted process: it needs no
sandbox, and most of a window's score is how hard the window is, which the paired comparison
removes. The fresh stream's nonce comes from the OS's CSPRNG for every evaluation, so no program
can know its windows in advance.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import torch

from evaluator.baselines import vectorized_seed
from evaluator.scoring import metrics
from evaluator.workloads.scenarios import FRESH_WINDOWS, Scenario, new_secret

# rebalance_experts(window, R, groups, nodes, gpus) -> (phy2log, log2phy, logcnt)
Placer = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

_REFERENCE_CACHE: dict[tuple[str, str], list[float]] = {}


def next_window_scores(scenario: Scenario, windows: torch.Tensor,
                       placements: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """GPU-level balancedness of placement i (phy2log, logcnt) on window i + 1, in window order."""
    return [metrics.placement_balancedness(windows[i + 1], phy2log, logcnt, scenario.shape.num_gpus)[0]
            for i, (phy2log, logcnt) in enumerate(placements)]


def reference_scores(scenario: Scenario, windows: torch.Tensor) -> list[float]:
    """The seed's policy on `windows` (fitted on i, scored on i + 1): a few ms per window."""
    s = scenario.shape
    args = (s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus)
    placements = ((p[0], p[2]) for p in (vectorized_seed.rebalance_experts(windows[i], *args)
                                         for i in range(windows.shape[0] - 1)))
    return next_window_scores(scenario, windows, placements)


def graded_reference_scores(scenario: Scenario, windows: torch.Tensor) -> list[float]:
    """`reference_scores` of graded windows, cached by content: every evaluation of a suite shares them
    (fresh windows are new each time, so caching them would only grow a worker's memory)."""
    key = (scenario.name, hashlib.sha256(windows.numpy().tobytes()).hexdigest())
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = reference_scores(scenario, windows)
    return _REFERENCE_CACHE[key]


def fresh_windows(scenario: Scenario) -> torch.Tensor | None:
    """A new secret stream of the scenario's workload (None for a trace file: it has no generator)."""
    return scenario.fresh_windows(new_secret(), FRESH_WINDOWS)
