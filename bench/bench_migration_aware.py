"""What the migration-aware baseline buys over the seed and forecast_lpt: balance, migration, locality, speed.

Per scenario of the suite (`default` unless --suite says otherwise) and per program, the programs
are called in the evaluator's order (evaluator/evaluate.py): an untimed warm-up on window 0 with
its expert order reversed, then windows 0..n-2; the placement fitted on window i is scored on
window i+1. A program whose signature takes `old_global_expert_indices` (vLLM's name for the
placement in force) gets the placement it returned on the call before, the warm-up's for window 0,
as the evaluator passes it; every program starts without history (forecast_lpt's and this
baseline's are reset first, as in a fresh evaluation process). Printed per scenario and program:

* balance: next-window GPU-level balancedness (evaluator.scoring.metrics), mean over placements;
* migrated: share of slots whose GPU did not hold the expert before the rebalance, mean over
  layers and windows: the cost model's definition when evaluator/scoring/cost_model.py exists
  (a further copy of an expert its GPU held is free), else the per-GPU multiset difference;
  window 0 counts its move from the warm-up's placement;
* nodes/token: the cost model's expected distinct nodes a token's experts sit on (group-limited
  routing modelled from the loads), on the scored window; "-" without the cost model;
* ms/call: median wall-clock milliseconds per call with one thread (the seed's own program is
  timed on --seed-calls windows; its placements come from the vectorised seed, identical to it);
* efficiency: the cost model's ideal / modelled time of the scenario's windows (compute,
  dispatch/combine, migration at each rebalance; evaluator.workloads.deployment presets), "-"
  without it. The default suite takes ~10 s.

PASS when, on every scenario, the baseline's migrated share is at most --max-migrated and its
balance is within --balance-tolerance of forecast_lpt's; on node-aware scenarios (num_groups a
multiple of num_nodes, e.g. DS-V3 prefill), where forecast_lpt ignores node locality, at least the
seed's (DeepSeek's hierarchical policy, the same locality) instead.

    .venv/bin/python bench/bench_migration_aware.py [--suite default] [--only NAME,...] [--seed-calls 3] [--no-cost]

Exit status 0 on PASS, 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evaluator.baselines import forecast_lpt, migration_aware, vectorized_seed  # noqa: E402
from evaluator.scoring.cost_model import migration  # noqa: E402
from evaluator.scoring.metrics import placement_balancedness  # noqa: E402
from evaluator.workloads.deployment import default_costs  # noqa: E402
from evaluator.workloads.scenarios import Scenario, suite  # noqa: E402
from seed_program.eplb import rebalance_experts as seed  # noqa: E402

HAS_COST_MODEL = importlib.util.find_spec("evaluator.scoring.cost_model") is not None
Program = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
PROGRAMS: dict[str, Program] = {
    "seed": vectorized_seed.rebalance_experts,
    "forecast_lpt": forecast_lpt.rebalance_experts,
    "migration_aware": migration_aware.rebalance_experts,
}


@dataclass
class Row:
    """One program on one scenario: the means over its scored placements, and its per-call time."""

    balance: float
    migrated: float
    nodes_per_token: float | None
    efficiency: float | None
    ms_per_call: float


def shape_args(scenario: Scenario) -> tuple[int, int, int, int]:
    s = scenario.shape
    return s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus


def takes_previous(program: Program) -> bool:
    return "old_global_expert_indices" in inspect.signature(program).parameters


Placed = tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor, list[float]]


def placements(program: Program, windows: torch.Tensor, scenario: Scenario) -> Placed:
    """The evaluator's calls: ([(phy2log, logcnt) of windows 0..n-2], the warm-up's phy2log, seconds per call)."""
    args = shape_args(scenario)
    forecast_lpt.reset_history()
    migration_aware.reset_memory()
    previous = program(windows[0].flip(-1).contiguous(), *args)[0]
    warm_up = previous
    answers, seconds = [], []
    for window in windows[:-1]:
        extra: dict[str, Any] = {"old_global_expert_indices": previous} if takes_previous(program) else {}
        start = time.perf_counter()
        phy2log, _, logcnt = program(window, *args, **extra)
        seconds.append(time.perf_counter() - start)
        answers.append((phy2log, logcnt))
        previous = phy2log
    return answers, warm_up, seconds


def score(program: Program, scenario: Scenario, use_cost: bool) -> Row:
    windows = scenario.search_windows()
    answers, warm_up, seconds = placements(program, windows, scenario)
    shape = scenario.shape
    previous = [warm_up] + [phy2log for phy2log, _ in answers[:-1]]
    balance = [placement_balancedness(windows[i + 1], p, c, shape.num_gpus)[0] for i, (p, c) in enumerate(answers)]
    ms = statistics.median(seconds) * 1e3
    if not use_cost:
        costs = default_costs(shape)
        migrated = [migration(p, old, shape, costs)[1] for old, (p, _) in zip(previous, answers)]
        return Row(statistics.fmean(balance), statistics.fmean(migrated), None, None, ms)
    from evaluator.scoring.cost_model import scenario_cost, window_cost
    from evaluator.workloads.deployment import scenario_costs

    costs = scenario_costs(scenario.name)
    total = scenario_cost([window_cost(windows[i + 1], p, c, old, shape, costs)
                           for i, ((p, c), old) in enumerate(zip(answers, previous))])
    return Row(statistics.fmean(balance), total.migrated_fraction, total.nodes_per_token, total.efficiency, ms)


def seed_ms(scenario: Scenario, calls: int) -> float:
    """Median per-call milliseconds of the seed program itself (one warm-up call first)."""
    windows = scenario.search_windows()
    args = shape_args(scenario)
    seed(windows[0], *args)
    times = []
    for window in windows[:calls]:
        start = time.perf_counter()
        seed(window, *args)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def optional(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="default", help="scenario suite (default, quick)")
    parser.add_argument("--only", default="", help="comma-separated scenario names to run (all when empty)")
    parser.add_argument("--seed-calls", type=int, default=3, help="calls of the seed program timed per scenario")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost model (efficiency, nodes per token)")
    parser.add_argument("--max-migrated", type=float, default=0.20, help="largest migrated share that passes")
    parser.add_argument("--balance-tolerance", type=float, default=0.005,
                        help="how far below forecast_lpt's balance the baseline may be")
    options = parser.parse_args()
    torch.set_num_threads(1)
    use_cost = HAS_COST_MODEL and not options.no_cost
    print(f"{'scenario':26} {'program':16} {'balance':>8} {'migrated':>9} {'nodes/token':>11} "
          f"{'ms/call':>8} {'efficiency':>10}")
    passed = True
    only = set(filter(None, options.only.split(",")))
    for scenario in [s for s in suite(options.suite) if not only or s.name in only]:
        rows = {name: score(program, scenario, use_cost) for name, program in PROGRAMS.items()}
        for name, row in rows.items():
            ms = f"{row.ms_per_call:8.2f}"
            if name == "seed":
                ms = f"{seed_ms(scenario, options.seed_calls):8.1f}"
            print(f"{scenario.name:26} {name:16} {row.balance:8.4f} {row.migrated:9.1%} "
                  f"{optional(row.nodes_per_token, '11.2f'):>11} {ms} {optional(row.efficiency, '10.4f'):>10}")
        ours = rows["migration_aware"]
        if scenario.shape.num_groups % scenario.shape.num_nodes == 0 and scenario.shape.num_nodes > 1:
            floor = rows["seed"].balance
        else:
            floor = rows["forecast_lpt"].balance - options.balance_tolerance
        passed = passed and ours.migrated <= options.max_migrated and ours.balance >= floor
    print(f"{'PASS' if passed else 'FAIL'}: migration_aware moves at most {options.max_migrated:.0%} of slots and "
          f"balances within {options.balance_tolerance} of forecast_lpt (node-aware scenarios: at least the seed) "
          "on every scenario")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
