"""Flags and checks shared by every verb that evaluates programs (eval, compare): limits, device,
the scenarios to score on, and the user mistakes caught before any process starts."""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import fields
from pathlib import Path

from evaluator.errors import UserError
from evaluator.evaluate import DEFAULT_REBALANCE_PERIOD_S, OBJECTIVES, EvalOptions, resolve_device
from evaluator.sandbox.candidate_process import Limits
from evaluator.workloads.deployment import DeploymentCosts
from evaluator.workloads.scenarios import Scenario, suite, trace_scenarios
from harness.config.settings import load_config
from harness.store.run_store import CONFIG, RunStore, resolve_run
from seed_program import SEED_PATH


def add_limit_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by every verb that evaluates programs."""
    d = Limits()
    p.add_argument("--period", type=float, default=DEFAULT_REBALANCE_PERIOD_S, metavar="S",
                   help="rebalance period in seconds used by combined_score (default %(default)s)")
    p.add_argument("--sandbox", choices=("auto", "process", "bwrap"), default=d.sandbox,
                   help="auto: bwrap where bubblewrap works, else process (default %(default)s)")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads for the candidate")
    p.add_argument("--call-timeout", type=float, default=d.call_timeout_s, metavar="S")
    p.add_argument("--deadline", type=float, default=d.deadline_s, metavar="S", help="whole-evaluation deadline")
    p.add_argument("--memory-mb", type=int, default=d.memory_mb)
    p.add_argument("--max-processes", type=int, default=d.max_processes, metavar="N",
                   help="processes and threads the candidate may have at once (default %(default)s)")
    p.add_argument("--objective", choices=OBJECTIVES, default="efficiency",
                   help="what combined_score multiplies: the modelled deployment efficiency (compute, "
                        "communication, migration; the default) or GPU-level balancedness alone (the peers' score)")
    p.add_argument("--timing", choices=("normalised", "wall"), default="normalised",
                   help="runtime_ms normalised by the yardstick beside each call (repeatable on a noisy "
                        "machine; the default) or plain wall clock; both are in --json")


def options_from(args: argparse.Namespace) -> EvalOptions:
    device = resolve_device(args.device, "--device")
    if args.period <= 0 or args.threads < 1 or args.call_timeout <= 0 or args.deadline <= 0:
        raise UserError("--period, --call-timeout and --deadline must be > 0 and --threads >= 1")
    limits = Limits(deadline_s=args.deadline, call_timeout_s=args.call_timeout, memory_mb=args.memory_mb,
                    threads=args.threads, sandbox=args.sandbox, max_processes=args.max_processes)
    return EvalOptions(device=device, heldout=getattr(args, "heldout", False),
                       rebalance_period_s=args.period, limits=limits,
                       normalise_timing=args.timing == "normalised", objective=args.objective)


def check_program_file(path: Path) -> None:
    """User mistakes caught before any process starts: missing file, no rebalance_experts at all."""
    if not path.is_file():
        raise UserError(f"{path}: no such program file; pass the path of a .py file exposing rebalance_experts")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the program ({error})") from None
    except SyntaxError:
        return  # a broken candidate is an invalid result (exit 1), reported by the evaluator
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    if "rebalance_experts" not in names:
        raise UserError(f"{path}: defines no top-level rebalance_experts(weight, num_replicas, num_groups, "
                        f"num_nodes, num_gpus); is this an EPLB program?")


def scenarios_from(args: argparse.Namespace) -> tuple[str, list[Scenario]]:
    if args.trace and getattr(args, "run", None):
        raise UserError("--trace and --run both say which windows to score on; pass one of them")
    if args.trace:
        overrides = {k: getattr(args, k) for k in ("replicas", "groups", "nodes", "gpus")
                     if getattr(args, k) is not None}
        constants = deployment_constants(getattr(args, "deployment", None) or [])
        scenarios = trace_scenarios(list(args.trace), args.window_steps, overrides, constants)
        for scenario in scenarios:
            print(f"{scenario.name}: deployment constants {_describe(scenario.costs)} (docs/cost-model.md; "
                  f"set any with --deployment KEY=VALUE)", file=sys.stderr)
        return "trace", scenarios
    if getattr(args, "deployment", None):
        raise UserError("--deployment sets the constants of --trace scenarios; the built-in suites carry their own")
    if getattr(args, "run", None):
        return _run_windows(args.run, args.runs_dir)
    return args.suite, suite(args.suite)


def _run_windows(run_name: str, runs_dir: str) -> tuple[str, list[Scenario]]:
    """A run's suite on the run's own (secret) windows, so a program scores as it did in the run."""
    path = resolve_run(run_name, runs_dir)
    config = load_config(path / CONFIG)
    with RunStore.open(path, readonly=True) as store:
        secret = store.secret
    return config.evaluator.suite, suite(config.evaluator.suite, secret)


def deployment_constants(pairs: list[str]) -> dict[str, float]:
    """KEY=VALUE flags as numbers (the names are checked against DeploymentCosts by the scenario)."""
    constants: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not key or number is None:
            raise UserError(f"--deployment {pair!r}: expected KEY=NUMBER, e.g. --deployment hidden_size=4096")
        constants[key.strip()] = int(number) if number.is_integer() and "." not in value else number
    return constants


def _describe(costs: DeploymentCosts | None) -> str:
    return ", ".join(f"{f.name}={getattr(costs, f.name)}" for f in fields(DeploymentCosts))


def is_seed(path: Path) -> bool:
    return path.resolve() == SEED_PATH.resolve() or path.read_bytes() == SEED_PATH.read_bytes()
