"""`eplb-evolve eval PROGRAM`: evaluate any EPLB program standalone, as the search would.

Exit 0 for a valid program, 1 for an invalid one (the JSON is still printed), 2 for a usage or
input error (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from evaluator import seed_timing
from evaluator.evaluate import evaluate
from evaluator.records import DeploymentFigures, Evaluation, ScenarioResult
from evaluator.sandbox.text import printable
from evaluator.workloads.scenarios import suite_names
from harness.cli.evaluation_flags import add_limit_flags, check_program_file, is_seed, options_from, scenarios_from


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate an EPLB program on a suite or on trace files",
                              description="Evaluate a program exposing rebalance_experts(...) in an "
                                          "isolated process and print its scores.")
    p.add_argument("program", type=Path, help="Python file exposing rebalance_experts(...)")
    p.add_argument("--suite", default="default", help=f"named suite ({', '.join(suite_names())})")
    p.add_argument("--run", metavar="RUN", help="score on a run's suite and its own secret windows, as the run "
                                                "scored its candidates (instead of the published windows)")
    p.add_argument("--runs-dir", default="runs", help="where run directories live (with --run)")
    p.add_argument("--trace", type=Path, nargs="+", metavar="FILE",
                   help="real load traces (ADRS/vLLM JSON or converted .npz) instead of a suite")
    p.add_argument("--window-steps", type=int,
                   help="steps per window for --trace (default: the .npz's own, or 100 for JSON)")
    for flag in ("replicas", "groups", "nodes", "gpus"):
        p.add_argument(f"--{flag}", type=int, help=f"deployment {flag} for --trace")
    p.add_argument("--deployment", action="append", metavar="KEY=VALUE",
                   help="a cost-model constant for --trace scenarios (repeatable), e.g. hidden_size=4096, "
                        "internode_bytes_per_s=25e9; defaults: the known model with the trace's expert count "
                        "(docs/cost-model.md), printed on stderr")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--heldout", action="store_true", help="score on held-out windows the search never sees")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_limit_flags(p)
    p.add_argument("--no-speedup", action="store_true", help="skip timing the seed for speedup_vs_seed")


def run(args: argparse.Namespace) -> int:
    check_program_file(args.program)
    suite_name, scenarios = scenarios_from(args)
    options = options_from(args)
    seed = is_seed(args.program)
    if not args.no_speedup and not seed:
        options = replace(options, seed_runtime_ms=seed_timing.seed_runtimes(scenarios, suite_name, options))
    result = evaluate(args.program, scenarios, suite_name, options)
    if seed and result.valid:
        seed_timing.remember(scenarios, options, {r.name: r.runtime_ms for r in result.scenarios})
        result = replace(result, speedup_vs_seed=1.0)
    print(json.dumps(result.to_dict(), indent=1) if args.json else render_table(args.program, result))
    return 0 if result.valid else 1


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


_BALANCE_COLUMNS = f"{'scenario':<26} {'GPU bal':>8} {'fresh bal':>9} {'slot bal':>8} {'in-sample':>9} " \
                   f"{'bound gap':>9} {'runtime ms':>10} {'combined':>8}"
_DEPLOYMENT_COLUMNS = f"{'scenario':<26} {'efficiency':>10} {'compute':>8} {'comm':>8} {'migration':>9} " \
                      f"{'ideal':>8} {'migrated':>8} {'nodes/tok':>9}"


def _balance_row(name: str, r: Evaluation | ScenarioResult) -> str:
    return (f"{name:<26} {r.balancedness:>8.4f} {_fmt(r.fresh_balancedness):>9} {r.balancedness_slot:>8.4f} "
            f"{r.balancedness_insample:>9.4f} {r.bound_gap:>9.4f} {r.runtime_ms:>10.2f} {r.combined_score:>8.4f}")


def _deployment_row(name: str, d: DeploymentFigures | None) -> str:
    if d is None:
        return f"{name:<26} {'-':>10}"
    ms = d.modelled_ms
    return (f"{name:<26} {d.efficiency:>10.4f} {ms.compute:>8.0f} {ms.communication:>8.0f} {ms.migration:>9.0f} "
            f"{ms.ideal:>8.0f} {d.migrated_fraction:>8.1%} {d.nodes_per_token:>9.2f}")


def render_table(program: Path, result: Evaluation) -> str:
    """The human-readable report: balance and deployment figures per scenario, then overall.

    Candidate text (the reason, the feedback with its output) is escaped: a program must not be able
    to draw its own table on the user's terminal."""
    head = (f"program: {program}   suite: {result.suite}{' (held-out windows)' if result.heldout else ''}   "
            f"device: {result.device}   sandbox: {result.sandbox}   objective: {result.objective}")
    if not result.valid:
        return (f"{head}\nINVALID: {printable(result.error or '', one_line=True)}\n\n"
                f"{printable(result.feedback, one_line=False)}")
    balance = [_balance_row(r.name, r) for r in result.scenarios]
    deployment = [_deployment_row(r.name, r.deployment) for r in result.scenarios]
    rule = "-" * len(_BALANCE_COLUMNS)
    tail = f"valid: yes   speedup_vs_seed: {_fmt(result.speedup_vs_seed, 2)}   wall: {result.wall_s:.1f} s"
    timing = ("runtime: wall clock" if result.timing_reference_ms is None else
              f"runtime: normalised to this machine's yardstick ({result.timing_reference_ms:.2f} ms); "
              f"wall clock {_fmt(result.runtime_ms_raw, 2)} ms")
    return "\n".join([head, _BALANCE_COLUMNS, *balance, rule, _balance_row("overall", result), "",
                      "modelled deployment time per rebalance period, ms (docs/cost-model.md):",
                      _DEPLOYMENT_COLUMNS, *deployment, rule, _deployment_row("overall", result.deployment), "",
                      tail, timing])
