"""The baselines against the seed: how much faster the vectorised seed is, how much better forecast_lpt balances.

Speed, on the DeepSeek-V3 prefill shape (58 x 256, R=288, 8 groups, 4 nodes, 32 GPUs) with one
thread: after one warm-up call of each program, every one of --inputs distinct windows of the
default suite's prefill scenario is given to the seed and to the vectorised seed --repeats
times each, interleaved so both see the same machine noise; a program's time is the median
over inputs of its per-input median. phy2log and logcnt must be identical. PASS when the seed takes
at least 20 times as long.

Balance, on every default-suite scenario: the seed and forecast_lpt are fitted on window i and
scored on window i+1 (GPU-level balancedness, as the evaluator scores) for the first --pairs
pairs. The seed's placements come from the vectorised seed, which is the seed exactly (checked
above and in tests/test_baselines.py) and keeps this part fast.

    .venv/bin/python bench/bench_baselines.py [--inputs 7] [--repeats 3] [--pairs 29] [--heldout]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evaluator.baselines import forecast_lpt, vectorized_seed  # noqa: E402
from evaluator.metrics import placement_balancedness  # noqa: E402
from evaluator.scenarios import Scenario, suite  # noqa: E402
from seed_program.eplb import rebalance_experts as seed  # noqa: E402

REQUIRED_SPEEDUP = 20.0
Program = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def shape_args(scenario: Scenario) -> tuple[int, int, int, int]:
    s = scenario.shape
    return s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus


def call_time(program: Program, weight: torch.Tensor, args: tuple[int, ...]) -> float:
    start = time.perf_counter()
    program(weight, *args)
    return time.perf_counter() - start


def bench_speed(scenario: Scenario, inputs: int, repeats: int) -> bool:
    """Print seed and vectorised per-call times and their ratio; True when the ratio passes."""
    windows = scenario.search_windows()[:inputs]
    args = shape_args(scenario)
    for program in (seed, vectorized_seed.rebalance_experts):
        program(windows[0], *args)  # warm-up
    seed_times, vector_times = [], []
    for weight in windows:
        expected = seed(weight, *args)
        got = vectorized_seed.rebalance_experts(weight, *args)
        if not (torch.equal(got[0], expected[0]) and torch.equal(got[2], expected[2])):
            raise SystemExit("FAIL: the vectorised seed's phy2log or logcnt differs from the seed's")
        per_input: dict[Program, list[float]] = {seed: [], vectorized_seed.rebalance_experts: []}
        for _ in range(repeats):
            for program, times in per_input.items():
                times.append(call_time(program, weight, args))
        seed_times.append(statistics.median(per_input[seed]))
        vector_times.append(statistics.median(per_input[vectorized_seed.rebalance_experts]))
    seed_ms = statistics.median(seed_times) * 1e3
    vector_ms = statistics.median(vector_times) * 1e3
    ratio = seed_ms / vector_ms
    verdict = "PASS" if ratio >= REQUIRED_SPEEDUP else "FAIL"
    print(f"speed on {scenario.name} ({len(windows)} inputs x {repeats} calls, 1 thread, identical placements):")
    print(f"  seed {seed_ms:8.1f} ms/call   vectorised {vector_ms:6.2f} ms/call   "
          f"speedup {ratio:5.1f}x   {verdict} (>= {REQUIRED_SPEEDUP:.0f}x)")
    return ratio >= REQUIRED_SPEEDUP


def next_window_balance(program: Program, windows: torch.Tensor, scenario: Scenario, pairs: int) -> list[float]:
    args = shape_args(scenario)
    scores = []
    for fit, score in zip(windows[:pairs], windows[1 : pairs + 1]):
        phy2log, _, logcnt = program(fit, *args)
        scores.append(placement_balancedness(score, phy2log, logcnt, scenario.shape.num_gpus)[0])
    return scores


def bench_balance(scenarios: list[Scenario], pairs: int, heldout: bool) -> None:
    """Print, per scenario, mean next-window GPU balancedness of seed vs forecast_lpt."""
    print(f"next-window GPU-level balancedness ({'held-out' if heldout else 'search'} windows):")
    print(f"  {'scenario':24} {'pairs':>5} {'seed':>7} {'forecast_lpt':>12} {'gain':>8} {'won':>5}")
    for scenario in scenarios:
        windows = scenario.heldout_windows() if heldout else scenario.search_windows()
        base = next_window_balance(vectorized_seed.rebalance_experts, windows, scenario, pairs)
        ours = next_window_balance(forecast_lpt.rebalance_experts, windows, scenario, pairs)
        won = sum(a > b for a, b in zip(ours, base)) / len(base)
        gain = statistics.fmean(ours) - statistics.fmean(base)
        print(f"  {scenario.name:24} {len(base):5d} {statistics.fmean(base):7.4f} {statistics.fmean(ours):12.4f} "
              f"{gain:+8.4f} {won:5.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=7, help="distinct prefill windows to time on")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per input and program")
    parser.add_argument("--pairs", type=int, default=29, help="fit/score window pairs per scenario")
    parser.add_argument("--heldout", action="store_true", help="score balance on the held-out windows")
    options = parser.parse_args()
    torch.set_num_threads(1)
    scenarios = suite("default")
    passed = bench_speed(scenarios[0], options.inputs, options.repeats)
    bench_balance(scenarios, options.pairs, options.heldout)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
