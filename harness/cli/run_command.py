"""`eplb-evolve run` (a new search) and `eplb-evolve resume RUN` (continue one after a stop or a crash)."""
from __future__ import annotations

import argparse
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from evaluator.errors import UserError
from harness.config.settings import RunConfig, dump_toml, load_config
from harness.search.controller import Controller, Tally
from harness.execution.executors import Evaluations
from harness.cli.run_setup import (evaluate_seed, load_recording, make_evaluations, make_population, make_proposer,
                               make_suites, run_path)
from harness.store.run_store import RunStore, resolve_run

VERB_FLAGS = {  # flag dest -> config key
    "name": "run.name", "runs_dir": "run.runs_dir", "iterations": "run.iterations",
    "max_time": "run.max_time_s", "max_cost": "run.max_cost", "seed": "run.seed",
    "concurrency": "run.concurrency", "fix_attempts": "run.fix_attempts", "suite": "evaluator.suite",
    "device": "evaluator.device", "proposer": "proposer.kind", "api_base": "proposer.api_base",
    "replay_from": "proposer.replay_from", "islands": "population.islands", "workers": "run.workers",
    "executor": "run.executor", "ray_address": "run.ray_address",
}
# What `resume` may change: budgets, and where evaluations run (a run's directory does not depend on it).
RESUME_FLAGS = ("iterations", "max_time", "max_cost", "concurrency", "workers", "executor", "ray_address")


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


def _progress_callback(bar: tqdm):
    def update(controller: Controller) -> None:
        t = controller.tally
        best = controller.population.best()
        bar.n = controller.store.next_attempt - 1
        bar.set_postfix(best=f"{best.score:.4f}" if best else "-",
                        valid=f"{t.valid}/{t.evaluated}", tokens=t.prompt_tokens + t.completion_tokens,
                        cost=f"${t.cost:.3f}", refresh=False)
        bar.refresh()
    return update


def _drive(store: RunStore, config: RunConfig, evaluations: Evaluations, quiet: bool) -> int:
    """Run the controller to its stop; Ctrl-C stops cleanly. Prints the summary; returns the exit code."""
    candidates = store.load_candidates()
    seed = next(c for c in candidates if c.id == 0)
    proposer = make_proposer(config)
    recording = load_recording(config)
    population = make_population(config, candidates, store.next_attempt)
    bar = tqdm(total=config.run.iterations, initial=store.next_attempt - 1, unit="attempt",
               desc=store.path.name, disable=True if quiet else None, file=sys.stderr)
    suites = make_suites(config, seed.evaluation, evaluations.device)
    controller = Controller(store, config, population, proposer, suites, on_progress=_progress_callback(bar),
                            recording=recording, evaluations=evaluations)
    started = time.monotonic()
    code = 0
    try:
        tally = controller.run()
    except KeyboardInterrupt:
        controller.stop("interrupted (Ctrl-C)")
        tally, code = controller.tally, 130
    finally:
        bar.close()
    print(summary(store, controller, seed, tally, time.monotonic() - started))
    return code


def summary(store: RunStore, controller: Controller, seed, tally: Tally, elapsed: float) -> str:
    best = controller.population.best()
    gain = f" ({(best.score / seed.score - 1) * 100:+.1f}% vs seed {seed.score:.4f})" if best and seed.score else ""
    where = store.path
    return "\n".join([
        f"run {where}: {tally.attempts} attempts this session, {tally.evaluated} evaluated "
        f"({tally.valid} valid); stopped by {tally.stopped_by}; {elapsed:.1f} s",
        f"best: candidate {best.id} '{best.name}' combined {best.score:.4f}{gain}" if best else "best: none",
        f"model use: {tally.prompt_tokens} prompt + {tally.completion_tokens} completion tokens, "
        f"${tally.cost:.4f} (whole run)",
        f"review: eplb-evolve log {where} | eplb-evolve show {where} {best.id if best else 0} | "
        f"git -C {where} log --all --graph --oneline",
    ])


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
    make_proposer(config)  # fail fast on a bad endpoint, key or replay source before the seed's evaluation
    load_recording(config)
    evaluations = make_evaluations(config)
    try:
        if offline:  # said once the settings are known good, so a mistake still gets a single error line
            print("no model configured: using the offline 'mutate' proposer (pass --model and --api-base for an "
                  "LLM)", file=sys.stderr)
        config = replace(config, run=replace(config.run, name=path.name))
        with RunStore.create(path, dump_toml(config), evaluate_seed(config, evaluations)) as store:
            return _drive(store, config, evaluations, args.no_progress)
    finally:
        evaluations.shutdown()


def _resume(args: argparse.Namespace) -> int:
    runs_dir = args.runs_dir or "runs"
    path = resolve_run(args.run_name, runs_dir)
    with RunStore.open(path) as store:
        overrides = {key: getattr(args, dest, None) for dest, key in VERB_FLAGS.items() if dest in RESUME_FLAGS}
        config = load_config(store.config_path, overrides)
        evaluations = make_evaluations(config)  # before the config is saved: it may be refused
        try:
            store.save_config(dump_toml(config))
            for repair in store.repairs:
                print(f"resume: {repair}", file=sys.stderr)
            done = store.next_attempt - 1
            if done >= config.run.iterations:
                print(f"{path}: all {config.run.iterations} attempts are done; pass --iterations N (> {done}) "
                      f"to go on", file=sys.stderr)
            return _drive(store, config, evaluations, args.no_progress)
        finally:
            evaluations.shutdown()
