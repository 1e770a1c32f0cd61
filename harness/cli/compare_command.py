"""`eplb-evolve compare PROGRAM... [--baselines]`: several programs side by side, the first as the yardstick.

Why a verb rather than several `eval` calls: the programs are evaluated one after another by one
process, on the same windows and with the same limits, so their runtimes are comparable, and the
speedup column is measured against the first program listed (usually the one being judged, or the
seed). `--baselines` appends the package's reference programs (and the seed) as anchors, so a
number always comes with something to hold it against.

Exit 0 when every program is valid, 1 when any is not (the table is still printed), 2 for a usage
or input error (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.baselines import baseline_label, baseline_paths
from evaluator.evaluate import evaluate
from evaluator.records import Evaluation
from evaluator.sandbox.text import printable
from evaluator.workloads.scenarios import suite_names
from harness.cli.evaluation_flags import add_limit_flags, check_program_file, is_seed, options_from, scenarios_from
from seed_program import SEED_PATH


@dataclass(frozen=True)
class Entry:
    """One program to compare: its file, its name in the table, and whether it is an anchor."""

    path: Path
    label: str
    baseline: bool = False


@dataclass(frozen=True)
class Compared:
    """A program's evaluation and its speedup over the first program listed (None if either is invalid)."""

    entry: Entry
    evaluation: Evaluation
    speedup: float | None


def entries_for(programs: list[Path], with_baselines: bool) -> list[Entry]:
    """The listed programs, then (with `with_baselines`) the seed and the baselines not already listed."""
    entries = [Entry(p, str(p)) for p in programs]
    if not with_baselines:
        return entries
    listed = {p.resolve() for p in programs}
    if not any(is_seed(p) for p in programs):
        entries.append(Entry(SEED_PATH, "seed (baseline)", baseline=True))
    entries += [Entry(p, baseline_label(p), baseline=True) for p in baseline_paths() if p.resolve() not in listed]
    return entries


def speedup(reference: Evaluation, other: Evaluation) -> float | None:
    """Geometric mean over scenarios of the reference's runtime / the other's (per-scenario medians)."""
    if not (reference.valid and other.valid):
        return None
    theirs = {s.name: s.runtime_ms for s in reference.scenarios}
    ratios = [theirs[s.name] / max(s.runtime_ms, 1e-6) for s in other.scenarios if s.name in theirs]
    return statistics.geometric_mean(ratios) if ratios else None


def compare(evaluations: list[tuple[Entry, Evaluation]]) -> list[Compared]:
    """Attach each program's speedup over the first one's runtimes."""
    reference = evaluations[0][1]
    return [Compared(entry, ev, speedup(reference, ev)) for entry, ev in evaluations]


def _deployment(field: str) -> Callable[[Evaluation], float | None]:
    def get(ev: Evaluation) -> float | None:
        return getattr(ev.deployment, field) if ev.deployment is not None else None
    return get


def _modelled(part: str) -> Callable[[Evaluation], float | None]:
    def get(ev: Evaluation) -> float | None:
        return getattr(ev.deployment.modelled_ms, part) if ev.deployment is not None else None
    return get


# (heading, how to read it from an Evaluation, width, format); speedup (None) comes from the comparison.
_COLUMNS: tuple[tuple[str, Callable[[Evaluation], float | None] | None, int, str], ...] = (
    ("efficiency", _deployment("efficiency"), 10, ".4f"),
    ("GPU bal", lambda ev: ev.balancedness, 8, ".4f"),
    ("fresh bal", lambda ev: ev.fresh_balancedness, 9, ".4f"),
    ("migrated", _deployment("migrated_fraction"), 8, ".1%"),
    ("nodes/tok", _deployment("nodes_per_token"), 9, ".2f"),
    ("compute", _modelled("compute"), 8, ".0f"),
    ("comm", _modelled("communication"), 8, ".0f"),
    ("migration", _modelled("migration"), 9, ".0f"),
    ("in-sample", lambda ev: ev.balancedness_insample, 9, ".4f"),
    ("runtime ms", lambda ev: ev.runtime_ms, 10, ".2f"),
    ("speedup", None, 8, ".2f"),
    ("combined", lambda ev: ev.combined_score, 8, ".4f"),
)


def _cell(value: float | None, width: int, spec: str) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def _value(result: Compared, read: Callable[[Evaluation], float | None] | None) -> float | None:
    if read is None:
        return result.speedup
    return read(result.evaluation) if result.evaluation.valid else None


def _row(result: Compared, width: int) -> str:
    cells = " ".join(_cell(_value(result, read), w, spec) for _, read, w, spec in _COLUMNS)
    return f"{result.entry.label:<{width}} {'yes' if result.evaluation.valid else 'NO':>5} {cells}"


def render_table(results: list[Compared]) -> str:
    """One row per program; invalid ones get dashes in the table and their reason below it."""
    first = results[0].evaluation
    width = max(24, *(len(r.entry.label) for r in results))
    head = (f"suite: {first.suite}{' (held-out windows)' if first.heldout else ''}   device: {first.device}   "
            f"sandbox: {first.sandbox}   objective: {first.objective}   speedup: vs {results[0].entry.label}   "
            f"compute/comm/migration: modelled ms per rebalance period")
    cols = f"{'program':<{width}} {'valid':>5} " + " ".join(f"{name:>{w}}" for name, _, w, _ in _COLUMNS)
    failures = [f"{r.entry.label}: INVALID: {printable(r.evaluation.error or '', one_line=True)}"
                for r in results if not r.evaluation.valid]
    return "\n".join([head, cols, "-" * len(cols), *(_row(r, width) for r in results),
                      *([""] + failures if failures else [])])


def to_json(results: list[Compared]) -> list[dict[str, Any]]:
    return [{"program": str(r.entry.path), "label": r.entry.label, "baseline": r.entry.baseline,
             "speedup": r.speedup, "evaluation": r.evaluation.to_dict()} for r in results]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="evaluate several programs on the same windows and print one table",
        description="Evaluate each PROGRAM in turn, isolated, on the same suite and limits, and print one row "
                    "per program; speedup is measured against the first PROGRAM.")
    p.add_argument("programs", type=Path, nargs="+", metavar="PROGRAM",
                   help="Python files exposing rebalance_experts(...); the first is the speedup reference")
    p.add_argument("--suite", default="default", help=f"named suite ({', '.join(suite_names())})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--heldout", action="store_true", help="score on held-out windows the search never sees")
    p.add_argument("--baselines", action="store_true",
                   help="append the package's baseline programs (and the seed, if not listed) as anchors")
    p.add_argument("--json", action="store_true",
                   help="print a list of objects: program, label, baseline, speedup, evaluation")
    add_limit_flags(p)
    p.set_defaults(trace=None)  # named suites only: scenarios_from then picks --suite


def run(args: argparse.Namespace) -> int:
    for program in args.programs:
        check_program_file(program)
    suite_name, scenarios = scenarios_from(args)
    options = options_from(args)
    entries = entries_for(list(args.programs), args.baselines)
    evaluations = []
    for number, entry in enumerate(entries, 1):
        print(f"[{number}/{len(entries)}] evaluating {entry.label} on '{suite_name}'"
              f"{' held-out windows' if options.heldout else ''} ...", file=sys.stderr)
        evaluations.append((entry, evaluate(entry.path, scenarios, suite_name, options)))
    results = compare(evaluations)
    print(json.dumps(to_json(results), indent=1) if args.json else render_table(results))
    return 0 if all(r.evaluation.valid for r in results) else 1
