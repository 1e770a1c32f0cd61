"""Harness overhead per candidate, measured through the real Controller; and the offline search figure.

Overhead (the default). The real `Controller.run` loop drives real parts: a run store (Git commits,
fsync'd journal, artifacts), the island population, prompt building with inspirations and
failures, the response parser, the patch engine, duplicate detection, the worker threads. Two
things are replaced, and only these:

* the proposer: a fast stand-in that answers every prompt at once with a real SEARCH/REPLACE
  response (setting a distinct constant in the parent's EVOLVE block), so there is no LLM wait;
* THE EVALUATION STEP: the controller is given `InstantEvaluations`, an evaluation executor that
  returns a precomputed Evaluation instantly (the seed's real evaluation on the quick suite, made
  once at start-up, with a per-candidate score drawn from a seeded generator).

What is timed per candidate is the interval between two finished attempts at concurrency 1:
planning (parent, inspirations, failures, prompt, context check) + proposal hand-off + parse +
apply + dedup + commit + population add + island/best refs, less the stand-in proposer's own
time. The population is filled with `--candidates` candidates first, then `--measure` more are
timed. PASS when the median is <= 50 ms.

    .venv/bin/python bench/bench_harness.py [--candidates 500] [--measure 200]

Search (`--search`): a real offline run, `eplb-evolve run --proposer mutate --suite quick
--iterations 30`, from the seed; prints the seed's and the best candidate's combined score,
how many attempts were evaluated or were duplicates, and PASS when the best beats the seed.

    .venv/bin/python bench/bench_harness.py --search [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluator.records import Evaluation  # noqa: E402
from harness.cli.main import main as cli_main  # noqa: E402
from harness.cli.run_setup import evaluate_seed, make_evaluations, make_population, make_suites  # noqa: E402
from harness.config.settings import dump_toml, load_config  # noqa: E402
from harness.execution.executors import EvalJob  # noqa: E402
from harness.proposers.base import Proposal, ProposalRequest  # noqa: E402
from harness.proposers.mutate import format_response  # noqa: E402
from harness.search.controller import Controller  # noqa: E402
from harness.store.run_store import RunStore  # noqa: E402

BUDGET_MS = 50.0
ANCHOR = "    weight = weight.detach().float().cpu()\n"  # a line of the seed's EVOLVE block


class InstantProposer:
    """Answers at once: sets `_variant = <request seed>` right after ANCHOR in the parent."""

    name = "bench"

    def propose(self, request: ProposalRequest) -> Proposal:
        started = time.perf_counter()
        code = request.parent_code
        start = code.index(ANCHOR) + len(ANCHOR)
        old = code[start:code.index("\n", start) + 1]
        search = ANCHOR + old if old.startswith("    _variant = ") else ANCHOR
        text = format_response(f"variant_{request.seed}", f"Set the variant marker to {request.seed}.",
                               ((search, f"{ANCHOR}    _variant = {request.seed}\n"),))
        return Proposal(text=text, model="bench", prompt_tokens=0, completion_tokens=0, cost=0.0,
                        latency_s=time.perf_counter() - started)


class InstantEvaluations:
    """THE EVALUATION STEP, REPLACED: every job gets `record` at once, with a score from `rng`."""

    slots, device = 1, "cpu"

    def __init__(self, record: Evaluation, rng: random.Random) -> None:
        self._record, self._rng = record, rng

    def submit(self, job: EvalJob) -> Future:
        future: Future = Future()
        score = self._record.combined_score * self._rng.uniform(0.9, 1.05)
        future.set_result(("valid", replace(self._record, combined_score=score)))
        return future

    def shutdown(self) -> None:
        pass


def overhead(args: argparse.Namespace) -> bool:
    total = args.candidates + args.measure
    config = load_config(None, {"evaluator.suite": "quick", "evaluator.device": "cpu", "run.iterations": total,
                                "run.concurrency": 1, "population.islands": 4})
    evaluations = make_evaluations(config)
    with contextlib.redirect_stderr(io.StringIO()):
        seed = evaluate_seed(config, evaluations, None)  # the one real evaluation: the record every stand-in returns
    evaluations.shutdown()
    finished: list[float] = []
    proposer_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp, \
            RunStore.create(Path(tmp) / "run", dump_toml(config), seed) as store:
        population = make_population(config, store.load_candidates(), store.next_attempt)

        def on_progress(c: Controller) -> None:
            finished.append(time.perf_counter())

        suites = make_suites(config, None, seed.evaluation)
        controller = Controller(store, config, population, InstantProposer(), suites,
                                on_progress=on_progress,
                                evaluations=InstantEvaluations(seed.evaluation, random.Random(0)))
        original_proposed = controller._proposed

        def proposed(p):  # note what the stand-in proposer itself took, to leave it out
            proposer_s.append(sum(call.proposal.latency_s for call in p.calls))
            return original_proposed(p)

        controller._proposed = proposed
        started = time.perf_counter()
        tally = controller.run()
        wall = time.perf_counter() - started
        candidates = len(population)
    assert tally.evaluated == total and candidates == total + 1, (tally, candidates)
    intervals = [(b - a - p) * 1e3 for a, b, p in zip(finished, finished[1:], proposer_s[1:])]
    timed = intervals[args.candidates - 1:]
    median = statistics.median(timed)
    p90 = statistics.quantiles(timed, n=10)[-1]
    print(f"harness overhead per candidate (real Controller, evaluation replaced by a precomputed record), "
          f"{args.measure} candidates timed with {args.candidates}-{total} in the population:")
    print(f"  median {median:.1f} ms   p90 {p90:.1f} ms   mean {statistics.fmean(timed):.1f} ms   "
          f"(first {args.candidates}: median {statistics.median(intervals[:args.candidates - 1]):.1f} ms; "
          f"whole run {wall:.1f} s)")
    ok = median <= BUDGET_MS
    print(f"{'PASS' if ok else 'FAIL'}: median {median:.1f} ms {'<=' if ok else '>'} {BUDGET_MS:.0f} ms")
    return ok


def search(args: argparse.Namespace) -> bool:
    passed = True
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
            started = time.perf_counter()
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli_main(["run", "--name", "search", "--runs-dir", tmp, "--proposer", "mutate",
                                 "--suite", "quick", "--iterations", str(args.iterations), "--seed", str(seed),
                                 "--no-progress"])
            wall = time.perf_counter() - started
            if code != 0:
                print(f"seed {seed}: eplb-evolve run exited {code}: {err.getvalue().strip()}")
                return False
            lines = [json.loads(line) for line in (Path(tmp) / "search" / "journal.jsonl").open()]
            entries = [e for e in lines if e.get("kind") != "call"]  # one outcome line per attempt
        attempts = [e for e in entries if e["attempt"] > 0]
        rows = {e["candidate_id"]: e for e in entries if e.get("candidate_id") is not None}
        seed_score = rows[0]["evaluation"]["combined_score"]
        best = max((e for e in rows.values() if e["status"] == "valid"),
                   key=lambda e: e["evaluation"]["combined_score"])
        best_score = best["evaluation"]["combined_score"]
        statuses = [e["status"] for e in attempts]
        beat = best_score > seed_score
        passed &= beat
        print(f"seed {seed}: {len(attempts)} attempts, {len(rows) - 1} evaluated "
              f"({statuses.count('valid')} valid), {statuses.count('duplicate')} duplicates; "
              f"seed combined {seed_score:.4f} (balancedness {rows[0]['evaluation']['balancedness']:.4f}), "
              f"best {best_score:.4f} (candidate {best['candidate_id']}, balancedness "
              f"{best['evaluation']['balancedness']:.4f}), {(best_score / seed_score - 1) * 100:+.2f}%; "
              f"{wall:.0f} s  {'PASS' if beat else 'FAIL'}")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=500, help="population size before timing")
    parser.add_argument("--measure", type=int, default=200, help="candidates timed after that")
    parser.add_argument("--search", action="store_true", help="run the offline search figure instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="--search: run seeds")
    parser.add_argument("--iterations", type=int, default=30, help="--search: attempts per run")
    args = parser.parse_args()
    return 0 if (search(args) if args.search else overhead(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
