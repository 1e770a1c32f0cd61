"""Calibration table: where the seed program lands on each scenario's workload, and what it costs.

For every scenario it fits the seed on window i and scores on window i+1 (as the evaluator does),
and prints the mean (and per-window range) of GPU-level, slot-level and in-sample balancedness,
the bound, the seed's median time per call and the seed's evaluation time that implies (one
call per window: W-1 scored calls plus the warm-up). The DeepSeek-V3 prefill row is checked
against the published real-trace figures (PASS/FAIL), so a change to the generator that moves
the workload away from reality shows up here.

    .venv/bin/python bench/bench_calibration.py [--suite default|quick] [--scenario NAME ...] [--heldout]
    .venv/bin/python bench/bench_calibration.py --trace TRACE.json [--window-steps 100]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evaluator.scoring import metrics  # noqa: E402
from evaluator.workloads.scenarios import Scenario, suite, trace_scenarios  # noqa: E402
from seed_program.eplb import rebalance_experts  # noqa: E402

# Published figures for DeepSeek's algorithm on the real ADRS trace (docs/eplb-problem.md).
TARGETS = {"gpu": (0.75, 0.90), "slot": (0.20, 0.45), "insample": (0.94, 0.99)}
MIN_HEADROOM = 0.05  # the bound must sit at least this far above the seed
CHECKED = "deepseek-v3-prefill"


@dataclass(frozen=True)
class Row:
    name: str
    windows: int
    gpu: list[float]
    slot: list[float]
    insample: list[float]
    bound: list[float]
    call_s: float  # median seconds per seed call

    @property
    def eval_s(self) -> float:
        return self.windows * self.call_s


def calibrate(scenario: Scenario, program: Callable, heldout: bool) -> Row:
    """Fit `program` (rebalance_experts' signature) on each window, score it on the next."""
    windows = scenario.heldout_windows() if heldout else scenario.search_windows()
    s = scenario.shape
    args = (s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus)
    program(windows[0].flip(-1).contiguous(), *args)  # warm-up, as the evaluator does
    gpu, slot, insample, bound, times = [], [], [], [], []
    for i in range(windows.shape[0] - 1):
        started = time.perf_counter()
        phy2log, _, logcnt = program(windows[i], *args)
        times.append(time.perf_counter() - started)
        next_gpu, next_slot = metrics.placement_balancedness(windows[i + 1], phy2log, logcnt, s.num_gpus)
        gpu.append(next_gpu)
        slot.append(next_slot)
        insample.append(metrics.placement_balancedness(windows[i], phy2log, logcnt, s.num_gpus)[0])
        bound.append(metrics.bound_balancedness(windows[i + 1], s.num_replicas, s.num_gpus))
    return Row(scenario.name, windows.shape[0], gpu, slot, insample, bound, statistics.median(times))


def _cell(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ({min(values):.2f}-{max(values):.2f})"


def verdict(row: Row) -> list[str]:
    """FAIL lines for a row outside the published ranges (empty when it passes)."""
    failures = []
    for key, (low, high) in TARGETS.items():
        value = statistics.fmean(getattr(row, key))
        if not low <= value <= high:
            failures.append(f"{key} {value:.3f} outside [{low}, {high}]")
    headroom = statistics.fmean(row.bound) - statistics.fmean(row.gpu)
    if headroom < MIN_HEADROOM:
        failures.append(f"bound only {headroom:.3f} above the seed (want >= {MIN_HEADROOM})")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--scenario", nargs="+", help="only these scenarios of the suite")
    parser.add_argument("--heldout", action="store_true", help="score the held-out windows instead")
    parser.add_argument("--trace", type=Path, nargs="+", help="real trace files instead of a suite")
    parser.add_argument("--window-steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the evaluator's child uses 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenarios = trace_scenarios(args.trace, args.window_steps) if args.trace else suite(args.suite)
    scenarios = [s for s in scenarios if not args.scenario or s.name in args.scenario]
    print(f"{'scenario':<28}{'W':>4}  {'GPU next (range)':<20}{'slot next (range)':<20}"
          f"{'in-sample':<20}{'bound':>7}{'ms/call':>9}{'eval s':>8}")
    rows = []
    for scenario in scenarios:
        row = calibrate(scenario, rebalance_experts, args.heldout)
        rows.append(row)
        print(f"{row.name:<28}{row.windows:>4}  {_cell(row.gpu):<20}{_cell(row.slot):<20}{_cell(row.insample):<20}"
              f"{statistics.fmean(row.bound):>7.3f}{row.call_s * 1e3:>9.1f}{row.eval_s:>8.1f}", flush=True)
    print(f"seed evaluation time (one call per window, incl. warm-up): {sum(r.eval_s for r in rows):.1f} s")
    checked = [r for r in rows if r.name.startswith(CHECKED)]
    status = 0
    for row in checked:
        failures = verdict(row)
        print(f"{row.name} vs published real-trace figures: " + ("PASS" if not failures else
                                                                   "FAIL: " + "; ".join(failures)))
        status |= bool(failures)
    return status


if __name__ == "__main__":
    sys.exit(main())
