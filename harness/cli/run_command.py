"""`eplb-evolve run` (a new search) and `eplb-evolve resume RUN` (continue one after a stop or a crash)."""
from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from evaluator.errors import UserError
from harness.cli.run_setup import (
    evaluate_seed,
    load_recording,
    make_evaluations,
    make_population,
    make_proposer,
    make_suites,
    run_path,
    run_secret,
)
from harness.config.settings import RunConfig, dump_toml, load_config
from harness.execution.executors import Evaluations
from harness.proposers.base import Proposer
from harness.search.controller import Controller, Tally
from harness.store.candidate import Candidate
from harness.store.run_store import RunStore, resolve_run

VERB_FLAGS = {  # flag dest -> config key
    "name": "run.name", "runs_dir": "run.runs_dir", "iterations": "run.iterations",
    "max_time": "run.max_time_s", "max_cost": "run.max_cost", "seed": "run.seed",
    "concurrency": "run.concurrency", "fix_attempts": "run.fix_attempts", "suite": "evaluator.suite",
    "device": "evaluator.device", "objective": "evaluator.objective", "proposer": "proposer.kind",
    "api_base": "proposer.api_base",
    "replay_from": "proposer.replay_from", "islands": "population.islands", "workers": "run.workers",
    "executor": "run.executor", "ray_address": "run.ray_address",
}
# What `resume` may change: budgets, and where evaluations run (a run's directory does not depend on it).
RESUME_FLAGS = ("iterations", "max_time", "max_cost", "concurrency", "workers", "executor", "ray_address")
PROGRESS_EVERY, PROGRESS_S = 10, 30.0  # without a terminal: a progress line every 10 attempts or 30 s
# When this share of a session's model calls (and at least this many) stop at the output limit, the
# summary says to raise max_output_tokens: the answers are being cut off, not merely long.
CUT_OFF_SHARE, CUT_OFF_MIN = 0.3, 3


def _session_flags(p: argparse.ArgumentParser) -> None:
    """Flags of both `run` and `resume`: budgets, and where evaluations run."""
    p.add_argument("--runs-dir", help="where run directories live (default: runs)")
    p.add_argument("--iterations", type=int, help="attempts in total (proposals tried)")
    p.add_argument("--max-time", type=float, metavar="S", help="stop launching attempts after S seconds")
    p.add_argument("--max-cost", type=float, metavar="USD", help="stop once model calls cost this much")
    p.add_argument("--concurrency", type=int, help="proposals (model conversations) in flight at once")
    p.add_argument("--workers", type=int, help="evaluations at once (default: one per [evaluator] threads "
                                               "physical cores, at most one per GPU on cuda; on Ray, the "
                                               "cluster's CPUs / threads or GPUs)")
    p.add_argument("--executor", choices=("local", "ray"), help="where evaluations run (ray: pip install -e '.[ray]')")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to use, e.g. auto, HOST:6379, ray://HOST:10001")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help="start a search from the seed program",
                              description="Evolve the seed EPLB program. Settings: defaults <- --config "
                                          "file <- flags. With no model configured, the offline "
                                          "'mutate' proposer is used.")
    p.add_argument("--config", type=Path, help="TOML file with [run] [evaluator] [population] [proposer]")
    p.add_argument("--name", help="run name (directory under --runs-dir); default run-DATE-TIME")
    _session_flags(p)
    p.add_argument("--seed", type=int, help="random seed of the search")
    p.add_argument("--suite", help="suite candidates are scored on (default, quick)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--objective", choices=("efficiency", "balancedness"),
                   help="what the search maximises: modelled deployment efficiency (default) or balancedness alone")
    p.add_argument("--proposer", choices=("llm", "mutate", "replay"))
    p.add_argument("--model", action="append", metavar="NAME[:WEIGHT]", help="LLM model (repeatable)")
    p.add_argument("--api-base", metavar="URL", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    p.add_argument("--replay-from", metavar="RUN", help="run whose recorded responses --proposer replay re-feeds")
    p.add_argument("--fix-attempts", type=int, help="follow-up calls when a patch does not apply")
    p.add_argument("--islands", type=int)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = subparsers.add_parser("resume", help="continue a stopped or crashed run",
                              description="Continue RUN (a name under --runs-dir or a path) with its saved "
                                          "config; budget and executor flags given here replace the saved ones "
                                          "(a run moves between executors unchanged).")
    r.add_argument("run_name", metavar="RUN")
    _session_flags(r)
    r.add_argument("--no-progress", action="store_true")


def _models(specs: list[str] | None) -> list[dict[str, Any]] | None:
    if not specs:
        return None
    models = []
    for spec in specs:
        name, _, weight = spec.partition(":")
        try:
            models.append({"name": name, "weight": float(weight) if weight else 1.0})
        except ValueError:
            raise UserError(f"--model {spec}: the weight after ':' must be a number, e.g. gpt-4o:2") from None
    return models


def _proposer_named(path: Path | None, args: argparse.Namespace) -> bool:
    """Did the user say anything about the proposer? If not, the offline default is used."""
    if args.proposer or args.model or args.api_base or args.replay_from:
        return True
    if path is None or not path.is_file():
        return False
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("proposer", {})
    except (OSError, tomllib.TOMLDecodeError):
        return True  # load_config reports the problem precisely
    return bool(table)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {key: getattr(args, dest, None) for dest, key in VERB_FLAGS.items()}
    if getattr(args, "model", None):
        values["proposer.models"] = _models(args.model)
    if values.get("proposer.replay_from") and not values.get("proposer.kind"):
        values["proposer.kind"] = "replay"
    elif (getattr(args, "model", None) or values.get("proposer.api_base")) and not values.get("proposer.kind"):
        values["proposer.kind"] = "llm"
    return values


class Progress:
    """Shows how a run goes after each attempt; this base shows nothing (--no-progress)."""

    def __call__(self, controller: Controller) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress(Progress):
    """A tqdm bar, on a terminal."""

    def __init__(self, store: RunStore, total: int) -> None:
        self.bar = tqdm(total=total, initial=store.next_attempt - 1, unit="attempt", desc=store.path.name,
                        file=sys.stderr)

    def __call__(self, controller: Controller) -> None:
        t = controller.tally
        best = controller.population.best()
        self.bar.n = controller.store.next_attempt - 1
        self.bar.set_postfix(best=f"{best.score:.4f}" if best else "-", valid=f"{t.valid}/{t.evaluated}",
                             tokens=t.spent.prompt_tokens + t.spent.completion_tokens, cost=f"${t.spent.cost:.3f}",
                             refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class PlainProgress(Progress):
    """Plain lines for a log file or a pipe, where a bar would be noise: after the first attempt, then
    every `every` attempts or `seconds`, whichever comes first."""

    def __init__(self, total: int, stream: TextIO, every: int = PROGRESS_EVERY, seconds: float = PROGRESS_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._total, self._stream, self._every, self._seconds, self._clock = total, stream, every, seconds, clock
        self._shown_at: tuple[int, float] | None = None  # (attempts, time) of the last line

    def __call__(self, controller: Controller) -> None:
        attempts, now = controller.tally.attempts, self._clock()
        if self._shown_at is not None and attempts - self._shown_at[0] < self._every \
                and now - self._shown_at[1] < self._seconds:
            return
        self._shown_at = (attempts, now)
        print(progress_line(controller, self._total), file=self._stream, flush=True)


def progress_line(controller: Controller, total: int) -> str:
    """E.g. "attempt 12/30: 9 evaluated, 7 valid, best 0.7712, 1.2k tokens, $0.01"."""
    t, best = controller.tally, controller.population.best()
    tokens = t.spent.prompt_tokens + t.spent.completion_tokens
    return (f"attempt {controller.store.next_attempt - 1}/{total}: {t.evaluated} evaluated, {t.valid} valid, "
            f"best {f'{best.score:.4f}' if best else '-'}, {_count(tokens)} tokens, ${t.spent.cost:.2f}")


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n / 1e3:.1f}k" if n >= 1000 else str(n)


def _progress(store: RunStore, total: int, quiet: bool) -> Progress:
    if quiet:
        return Progress()
    return BarProgress(store, total) if sys.stderr.isatty() else PlainProgress(total, sys.stderr)


def _drive(store: RunStore, config: RunConfig, evaluations: Evaluations, proposer: Proposer, quiet: bool) -> int:
    """Run the controller to its stop; Ctrl-C stops cleanly. Prints the summary; returns the exit code.
    `proposer` was made (and its endpoint probed, once) by the caller before any evaluation."""
    candidates = store.load_candidates()
    seed = next(c for c in candidates if c.id == 0)
    recording = load_recording(config)
    population = make_population(config, candidates, store.next_attempt)
    progress = _progress(store, config.run.iterations, quiet)
    suites = make_suites(config, store.secret, seed.evaluation, evaluations.device)
    controller = Controller(store, config, population, proposer, suites, evaluations, on_progress=progress,
                            recording=recording)
    started = time.monotonic()
    code = 0
    try:
        tally = controller.run()
    except KeyboardInterrupt:
        controller.stop("interrupted (Ctrl-C)")
        tally, code = controller.tally, 130
    finally:
        progress.close()
    print(summary(store, controller, seed, tally, time.monotonic() - started))
    return code


def summary(store: RunStore, controller: Controller, seed: Candidate, tally: Tally, elapsed: float) -> str:
    best = controller.population.best()
    gain = f" ({(best.score / seed.score - 1) * 100:+.1f}% vs seed {seed.score:.4f})" if best and seed.score else ""
    where = store.path
    return "\n".join([
        f"run {where}: {tally.attempts} attempts this session, {tally.evaluated} evaluated "
        f"({tally.valid} valid); stopped by {tally.stopped_by}; {elapsed:.1f} s",
        f"best: candidate {best.id} '{best.name}' combined {best.score:.4f}{gain}" if best else "best: none",
        f"model use: {tally.spent.prompt_tokens} prompt + {tally.spent.completion_tokens} completion tokens, "
        f"${tally.spent.cost:.4f} (whole run)",
        *_cut_off_advice(store, controller.config, tally),
        f"review: eplb-evolve log {where} | eplb-evolve show {where} {best.id if best else 0} | "
        f"git -C {where} log --all --graph --oneline",
    ])


def _cut_off_advice(store: RunStore, config: RunConfig, tally: Tally) -> list[str]:
    """Advice when many answers were cut off at the output limit: each such answer is a wasted call."""
    if tally.cut_off < max(CUT_OFF_MIN, CUT_OFF_SHARE * tally.calls):
        return []
    prop = config.proposer
    return [f"advice: {tally.cut_off} of {tally.calls} model calls this session stopped at the output limit "
            f"(finish_reason \"length\", max_output_tokens = {prop.max_output_tokens}); raise max_output_tokens "
            f"under [proposer] in {store.config_path} (below context_tokens = {prop.context_tokens}) before resuming"]


def run(args: argparse.Namespace) -> int:
    if args.command == "resume":
        return _resume(args)
    overrides = _overrides(args)
    offline = not _proposer_named(args.config, args)
    if offline:
        overrides["proposer.kind"] = "mutate"
    config = load_config(args.config, overrides)
    path = run_path(config)
    if path.exists() and any(path.iterdir()):
        raise UserError(f"{path}: a run of that name exists; resume it with 'eplb-evolve resume {path}' "
                        f"or pick another --name")
    proposer = make_proposer(config)  # fail fast on a bad endpoint, key or replay source before the seed's evaluation
    load_recording(config)
    evaluations = make_evaluations(config)
    try:
        if offline:  # said once the settings are known good, so a mistake still gets a single error line
            print("no model configured: using the offline 'mutate' proposer (pass --model and --api-base for an "
                  "LLM)", file=sys.stderr)
        config = replace(config, run=replace(config.run, name=path.name))
        secret = run_secret(config)
        with RunStore.create(path, dump_toml(config), evaluate_seed(config, evaluations, secret), secret) as store:
            return _drive(store, config, evaluations, proposer, args.no_progress)
    finally:
        evaluations.shutdown()


def _resume(args: argparse.Namespace) -> int:
    runs_dir = args.runs_dir or "runs"
    path = resolve_run(args.run_name, runs_dir)
    with RunStore.open(path) as store:
        overrides = {key: getattr(args, dest, None) for dest, key in VERB_FLAGS.items() if dest in RESUME_FLAGS}
        config = load_config(store.config_path, overrides)
        proposer = make_proposer(config)
        evaluations = make_evaluations(config)  # before the config is saved: it may be refused
        try:
            store.save_config(dump_toml(config))
            for repair in store.repairs:
                print(f"resume: {repair}", file=sys.stderr)
            done = store.next_attempt - 1
            if done >= config.run.iterations:
                print(f"{path}: all {config.run.iterations} attempts are done; pass --iterations N (> {done}) "
                      f"to go on", file=sys.stderr)
            return _drive(store, config, evaluations, proposer, args.no_progress)
        finally:
            evaluations.shutdown()
