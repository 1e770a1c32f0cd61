"""The fresh-stream check (evaluator/scoring/fresh_check.py): false positives of honest programs, detection of
programs that know the graded windows, and what a fresh stream costs to generate.

For every scenario of the default and quick suites, programs are called in-process in the
evaluator's order (a warm-up on window 0 reversed along the expert axis, then windows 0..n-2,
the placement from window i scored on window i+1, GPU-level balancedness; forecast_lpt's history
forgotten before each stream) on three kinds of graded windows: the published search and held-out
windows and the search windows of --secrets secret suites; and on --nonces fresh streams of
FRESH_WINDOWS windows (Scenario.fresh_windows). The reference is the vectorised seed, whose
placements are the seed program's (bench/bench_baselines.py checks that). Every graded set is
checked against every fresh stream as one evaluation of the suite would be (fresh_check.check:
each scenario and all together).

Honest programs: the seed (vectorised), forecast_lpt, the seed with the global policy, and two
extremes whose per-window scores come in runs: a static placement that ignores its input and the
seed on the sum of all windows seen so far. A program "knows the graded windows" when it fits
on (1 - a) * window i + a * window i+1 on the graded windows (a = 1: the window it is scored on)
and behaves as its honest base (the seed or forecast_lpt) on fresh ones, which it cannot know.

Printed: per program, the checks run, how many flagged it, and the largest z of any scenario and
of the suites' pooled test; the same z without the reference (raw balancedness) beside it.
PASS when no honest program is ever flagged and every a = 1 program always is.

    .venv/bin/python bench/bench_fresh_check.py [--nonces 20] [--secrets 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from evaluator.baselines import forecast_lpt, vectorized_seed  # noqa: E402
from evaluator.scoring.fresh_check import Comparison, ScenarioScores, check, compare, pooled  # noqa: E402
from evaluator.scoring.metrics import placement_balancedness  # noqa: E402
from evaluator.workloads.scenarios import FRESH_WINDOWS, Scenario, suite  # noqa: E402

Program = Callable[..., tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]
ALPHAS = (0.05, 0.1, 0.2, 0.5, 1.0)
SEED = vectorized_seed.rebalance_experts


def global_seed(weight: torch.Tensor, replicas: int, groups: int, nodes: int, gpus: int):
    return SEED(weight, replicas, 1, 1, gpus)


def static(weight: torch.Tensor, replicas: int, groups: int, nodes: int, gpus: int):
    """Ignores its input: experts in order, then the extra replicas on experts 0, 1, ..."""
    layers, experts = weight.shape
    phy2log = (torch.arange(replicas) % experts).expand(layers, replicas).contiguous()
    return phy2log, None, torch.stack([torch.bincount(row, minlength=experts) for row in phy2log])


class HistorySum:
    """The seed on the sum of every window since the stream began: honest, with a long memory."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None

    def __call__(self, weight: torch.Tensor, replicas: int, groups: int, nodes: int, gpus: int):
        self.total = weight.clone() if self.total is None else self.total + weight
        return SEED(self.total, replicas, groups, nodes, gpus)


HISTORY = HistorySum()
HONEST: dict[str, Program] = {"seed": SEED, "forecast_lpt": forecast_lpt.rebalance_experts,
                              "seed, global policy": global_seed, "static placement": static,
                              "history sum": HISTORY}
CHEAT_BASES: dict[str, Program] = {"seed": SEED, "forecast_lpt": forecast_lpt.rebalance_experts}


def scores(program: Program, windows: torch.Tensor, scenario: Scenario, knows: float = 0.0) -> list[float]:
    """Next-window GPU balancedness per pair, in the evaluator's order, fitted on a mix with the next window."""
    s = scenario.shape
    args = (s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus)
    forecast_lpt.reset_history()
    program(windows[0].flip(-1).contiguous(), *args)
    HISTORY.total = None  # a new stream: the warm-up window is not part of its history
    result = []
    for i in range(windows.shape[0] - 1):
        fit = windows[i] if knows == 0 else (1 - knows) * windows[i] + knows * windows[i + 1]
        phy2log, _, logcnt = program(fit, *args)
        result.append(placement_balancedness(windows[i + 1], phy2log, logcnt, s.num_gpus)[0])
    return result


@dataclass(frozen=True)
class Runs:
    """One scenario's per-window scores: graded sets by label, fresh streams by nonce; per program name."""

    graded: dict[str, dict[str, list[float]]]  # label -> program -> scores (plus "reference")
    fresh: list[dict[str, list[float]]]  # nonce index -> program -> scores (plus "reference")


def graded_sets(suite_name: str, index: int, secrets: int) -> Iterator[tuple[str, torch.Tensor]]:
    scenario = suite(suite_name)[index]
    yield "published search", scenario.search_windows()
    yield "published held-out", scenario.heldout_windows()
    for secret in range(secrets):
        yield f"secret {secret} search", suite(suite_name, secret=1000 + secret)[index].search_windows()


def run_scenario(suite_name: str, index: int, nonces: int, secrets: int) -> tuple[Runs, float]:
    """Every program on every window set of one scenario; also the ms to generate one fresh stream."""
    scenario = suite(suite_name)[index]
    graded: dict[str, dict[str, list[float]]] = {}
    for label, windows in graded_sets(suite_name, index, secrets):
        graded[label] = {name: scores(program, windows, scenario) for name, program in HONEST.items()}
        graded[label]["reference"] = graded[label]["seed"]
        for base, program in CHEAT_BASES.items():
            for alpha in ALPHAS:
                graded[label][cheat_name(base, alpha)] = scores(program, windows, scenario, alpha)
    fresh, generation = [], []
    for nonce in range(nonces):
        start = time.perf_counter()
        windows = scenario.fresh_windows(nonce=7_000 + nonce, count=FRESH_WINDOWS)
        generation.append(time.perf_counter() - start)
        stream = {name: scores(program, windows, scenario) for name, program in HONEST.items()}
        stream["reference"] = stream["seed"]
        fresh.append(stream)
    return Runs(graded, fresh), statistics.median(generation) * 1e3


def cheat_name(base: str, alpha: float) -> str:
    return f"knows graded, a={alpha:g}, {base}"


def fresh_name(program: str) -> str:
    """What a program does on fresh windows: a cheat is its honest base there."""
    return next((base for base in CHEAT_BASES if program.startswith("knows") and program.endswith(base)), program)


def scenario_scores(name: str, runs: Runs, label: str, nonce: int, program: str, paired: bool) -> ScenarioScores:
    """`paired` False compares raw balancedness: a reference of zeros."""
    graded, fresh = runs.graded[label][program], runs.fresh[nonce][fresh_name(program)]
    if paired:
        return ScenarioScores(name, graded, runs.graded[label]["reference"], fresh, runs.fresh[nonce]["reference"])
    return ScenarioScores(name, graded, [0.0] * len(graded), fresh, [0.0] * len(fresh))


@dataclass
class Tally:
    checks: int = 0
    flagged: int = 0
    max_z: float = float("-inf")  # largest per-scenario z
    min_top_z: float = float("inf")  # smallest over checks of the largest z in a check (scenario or pooled)
    max_pooled_z: float = float("-inf")
    raw_max_z: float = float("-inf")
    raw_min_top_z: float = float("inf")
    gains: list[float] | None = None


def evaluate_suite(suite_name: str, all_runs: list[Runs], names: list[str], nonces: int) -> dict[str, Tally]:
    """Every (program, graded set, nonce) as one evaluation of the suite, paired and raw."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    programs = [p for p in all_runs[0].graded["published search"] if p != "reference"]
    for program in programs:
        tally = tallies[program]
        tally.gains = []
        for label in all_runs[0].graded:
            for nonce in range(nonces):
                for paired in (True, False):
                    found = [compare(scenario_scores(n, r, label, nonce, program, paired))
                             for n, r in zip(names, all_runs)]
                    per = [c for c in found if c is not None]
                    together = pooled(per)
                    top = max(c.z for c in per + [together])
                    if paired:
                        tally.checks += 1
                        tally.flagged += check([scenario_scores(n, r, label, nonce, program, True)
                                                for n, r in zip(names, all_runs)]) is not None
                        tally.max_z = max(tally.max_z, max(c.z for c in per))
                        tally.max_pooled_z = max(tally.max_pooled_z, together.z)
                        tally.min_top_z = min(tally.min_top_z, top)
                        tally.gains.append(statistics.fmean(graded_gain(c, r, label, program) for c, r in
                                                            zip(per, all_runs)))
                    else:
                        tally.raw_max_z = max(tally.raw_max_z, max(c.z for c in per + [together]))
                        tally.raw_min_top_z = min(tally.raw_min_top_z, top)
    return tallies


def graded_gain(comparison: Comparison, runs: Runs, label: str, program: str) -> float:
    """How much more the program scores on the graded windows than its honest self does there."""
    return comparison.graded - statistics.fmean(runs.graded[label][fresh_name(program)])


def report(suite_name: str, tallies: dict[str, Tally]) -> bool:
    print(f"\n{suite_name} suite: {'program':36} {'checks':>6} {'flagged':>8} {'max z':>6} {'pooled':>6} "
          f"{'min top z':>9} {'gain':>6} | raw: {'max z':>6} {'min top z':>9}")
    passed = True
    for program, t in tallies.items():
        honest = not program.startswith("knows")
        print(f"  {program:44} {t.checks:6d} {t.flagged:8d} {t.max_z:6.1f} {t.max_pooled_z:6.1f} {t.min_top_z:9.1f} "
              f"{statistics.fmean(t.gains):+6.3f} | {t.raw_max_z:11.1f} {t.raw_min_top_z:9.1f}")
        if honest and t.flagged:
            passed = False
        if program.startswith("knows graded, a=1,") and t.flagged < t.checks:
            passed = False
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nonces", type=int, default=20, help="fresh streams per scenario")
    parser.add_argument("--secrets", type=int, default=3, help="secret suites whose search windows are graded too")
    options = parser.parse_args()
    torch.set_num_threads(1)
    passed = True
    for suite_name in ("default", "quick"):
        names = [s.name for s in suite(suite_name)]
        all_runs = []
        for index, name in enumerate(names):
            started = time.perf_counter()
            runs, generation_ms = run_scenario(suite_name, index, options.nonces, options.secrets)
            all_runs.append(runs)
            print(f"{name}: a fresh stream of {FRESH_WINDOWS} windows takes {generation_ms:.0f} ms to generate "
                  f"(measured in {time.perf_counter() - started:.0f} s)", flush=True)
        passed = report(suite_name, evaluate_suite(suite_name, all_runs, names, options.nonces)) and passed
    print(f"\n{'PASS' if passed else 'FAIL'}: honest programs never flagged, programs fitted on the scored window "
          "always flagged")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
