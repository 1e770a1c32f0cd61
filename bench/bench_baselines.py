"""The baselines against the seed: how much faster the vectorised seed is, how much better forecast_lpt balances.

Speed of the vectorised seed, on the DeepSeek-V3 prefill shape (58 x 256, R=288, 8 groups,
4 nodes, 32 GPUs) with one thread: after one warm-up call of each program, every one of
--inputs distinct windows of the default suite's prefill scenario is given to the seed and to
the vectorised seed --repeats times each, interleaved so both see the same machine noise; a
program's time is the median over inputs of its per-input median. phy2log and logcnt must be
identical. PASS when the seed takes at least 20 times as long.

Balance of forecast_lpt (baseline 2), on every default-suite scenario, on its search windows
and on its held-out windows: the seed and forecast_lpt are fitted on window i and scored on
window i+1 (GPU-level balancedness, as the evaluator scores it), for every consecutive pair,
called in the evaluator's order (a reversed warm-up window, then the windows in time order, fresh
history per scenario and window set: forecast_lpt forecasts from the history of past windows).
The seed's placements come from the vectorised seed, which is the seed exactly (checked above
and in tests/test_baselines.py) and keeps this part fast. Printed per scenario and window set:
the two means, the gain with its standard error over the pairs (paired), the share of pairs
forecast_lpt won, and per-call milliseconds (one thread) of the seed program (median of
--seed-calls calls), the vectorised seed and forecast_lpt (medians over the pairs). PASS when
forecast_lpt's mean is higher than the seed's on every scenario and both window sets.

--extra-streams K also scores K more independent windows sequences per scenario (synthetic
streams 3, 4, ...: the same deployment and workload as the search and held-out windows, never
used by a search or by `--heldout`). With 29 pairs each they give the expected gain to within
a few ten-thousandths, where the 7 held-out pairs alone have a standard error of ~0.003.

    .venv/bin/python bench/bench_baselines.py [--inputs 7] [--repeats 3] [--seed-calls 3] [--extra-streams 0]

Exit status 0 when both verdicts PASS, 1 otherwise.
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

from evaluator.baselines import forecast_lpt, vectorized_seed  # noqa: E402
from evaluator.scoring.metrics import placement_balancedness  # noqa: E402
from evaluator.workloads.scenarios import Scenario, suite  # noqa: E402
from evaluator.workloads.synthetic import generate_windows  # noqa: E402
from seed_program.eplb import rebalance_experts as seed  # noqa: E402

REQUIRED_SPEEDUP = 20.0
FIRST_EXTRA_STREAM = 3  # synthetic streams 0-2 are the popularity, the search and the held-out windows
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


@dataclass
class Scored:
    """Next-window GPU-level balancedness of each fit/score pair and the per-call times (s)."""

    balance: list[float]
    times: list[float]


def next_window_balance(program: Program, windows: torch.Tensor, scenario: Scenario) -> Scored:
    """Fit on window i, score on window i+1, for every consecutive pair; time each call.

    The calls are the evaluator's sequence for one scenario (evaluator/evaluate.py): an untimed
    warm-up on window 0 with its expert order reversed, then windows 0..n-2 in time order, with
    forecast_lpt's history forgotten first, as in a fresh evaluation process. forecast_lpt keeps
    history between calls, so its figures depend on that sequence; the seed's do not.
    """
    args = shape_args(scenario)
    scored = Scored([], [])
    forecast_lpt.reset_history()
    program(windows[0].flip(-1).contiguous(), *args)
    for fit, score in zip(windows[:-1], windows[1:]):
        start = time.perf_counter()
        phy2log, _, logcnt = program(fit, *args)
        scored.times.append(time.perf_counter() - start)
        scored.balance.append(placement_balancedness(score, phy2log, logcnt, scenario.shape.num_gpus)[0])
    return scored


def extra_windows(scenario: Scenario, stream: int) -> torch.Tensor:
    """A further independent window sequence of a synthetic scenario, as long as its search windows."""
    source = scenario.source
    return torch.from_numpy(generate_windows(source.params, source.num_layers, source.num_experts, source.seed,
                                             stream, source.num_search).copy())


def seed_ms(scenario: Scenario, calls: int) -> float:
    """Median per-call milliseconds of the seed program itself on the first `calls` search windows."""
    windows = scenario.search_windows()
    args = shape_args(scenario)
    seed(windows[0], *args)  # warm-up
    return statistics.median(call_time(seed, w, args) for w in windows[:calls]) * 1e3


def bench_balance(scenarios: list[Scenario], seed_calls: int, extra_streams: int) -> bool:
    """Print seed vs forecast_lpt per scenario and window set; True when forecast_lpt is higher everywhere."""
    print("next-window GPU-level balancedness, fitted on window i and scored on i+1 "
          "(gain = forecast_lpt - seed, +- its standard error over the pairs):")
    print(f"  {'scenario':22} {'windows':9} {'pairs':>5} {'seed':>7} {'forecast_lpt':>12} {'gain':>8} "
          f"{'+-':>6} {'won':>5}   {'ms/call: seed':>13} {'vectorised':>10} {'forecast_lpt':>12}")
    passed = True
    for scenario in scenarios:
        sets = [("search", scenario.search_windows()), ("held-out", scenario.heldout_windows())]
        sets += [(f"stream {s}", extra_windows(scenario, s))
                 for s in range(FIRST_EXTRA_STREAM, FIRST_EXTRA_STREAM + extra_streams)]
        seed_time = seed_ms(scenario, seed_calls)
        extra_base: list[float] = []
        extra_ours: list[float] = []
        for label, windows in sets:
            base = next_window_balance(vectorized_seed.rebalance_experts, windows, scenario)
            ours = next_window_balance(forecast_lpt.rebalance_experts, windows, scenario)
            if label.startswith("stream"):
                extra_base += base.balance
                extra_ours += ours.balance
                continue
            higher = print_row(scenario.name, label, base.balance, ours.balance,
                               f"{seed_time:13.1f} {statistics.median(base.times) * 1e3:10.2f} "
                               f"{statistics.median(ours.times) * 1e3:12.2f}")
            passed = passed and higher
        if extra_streams:
            print_row(scenario.name, f"+{extra_streams} strm", extra_base, extra_ours, "(not in the verdict)")
    verdict = "PASS" if passed else "FAIL"
    print(f"  {verdict}: forecast_lpt {'is' if passed else 'is not'} higher than the seed on every scenario, "
          "search and held-out windows")
    return passed


def print_row(name: str, label: str, base: list[float], ours: list[float], tail: str) -> bool:
    """One table row; True when forecast_lpt's mean is higher than the seed's."""
    gains = [a - b for a, b in zip(ours, base)]
    error = statistics.stdev(gains) / len(gains) ** 0.5 if len(gains) > 1 else 0.0
    won = sum(g > 0 for g in gains) / len(gains)
    gain = statistics.fmean(gains)
    print(f"  {name:22} {label:9} {len(gains):5d} {statistics.fmean(base):7.4f} {statistics.fmean(ours):12.4f} "
          f"{gain:+8.4f} {error:6.4f} {won:5.0%}   {tail}")
    return gain > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=7, help="distinct prefill windows to time the seeds on")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per input and program")
    parser.add_argument("--seed-calls", type=int, default=3, help="calls of the seed program timed per scenario")
    parser.add_argument("--extra-streams", type=int, default=0,
                        help="further independent window sequences per scenario (expected gain)")
    options = parser.parse_args()
    torch.set_num_threads(1)
    scenarios = suite("default")
    fast = bench_speed(scenarios[0], options.inputs, options.repeats)
    better = bench_balance(scenarios, options.seed_calls, options.extra_streams)
    sys.exit(0 if fast and better else 1)


if __name__ == "__main__":
    main()
