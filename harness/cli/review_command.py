"""Reviewing a run: `log RUN`, `show RUN ID`, `best RUN [--export PATH]`.

All read-only (no lock), so they work on a run that is still going. Everything they print comes
from the run's Git refs, the source of truth; `git -C RUN log --all --graph` tells the same story.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluator.errors import UserError
from harness.store.candidate import HEADLINE, Candidate, best_of, metrics
from harness.store.files import atomic_write
from harness.store.run_store import RunStore, resolve_run


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    for verb, text in (("log", "one row per candidate of a run"),
                       ("show", "a candidate's description, metrics, feedback and diff against its parent"),
                       ("best", "the best candidate of a run (and --export its program)")):
        p = subparsers.add_parser(verb, help=text, description=text)
        p.add_argument("run_name", metavar="RUN", help="run name under --runs-dir, or a run directory")
        p.add_argument("--runs-dir", default="runs")
        if verb == "show":
            p.add_argument("candidate_id", metavar="ID", type=int)
        if verb == "best":
            p.add_argument("--export", type=Path, metavar="PATH", help="write the best program to PATH")
        if verb != "show":
            p.add_argument("--json", action="store_true")


def _row(c: Candidate) -> dict:
    """A candidate in `--json` output: every headline metric, null where it has none (not valid)."""
    ev = c.evaluation
    return {"id": c.id, "parent": list(c.parent_ids), "island": c.island, "status": c.status,
            **dict.fromkeys(HEADLINE), **metrics(ev), "name": c.name, "model": c.model, "attempt": c.iteration,
            "commit": c.commit, "error": ev.error if ev else None}


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_log(candidates: list[Candidate]) -> str:
    lines = [f"{'id':>4} {'parent':>7} {'isl':>3} {'status':<8} {'combined':>8} {'bal':>7} {'ms':>9}  name"]
    for c in candidates:
        ev, values = c.evaluation, metrics(c.evaluation)
        parents = "+".join(str(p) for p in c.parent_ids) or "-"
        lines.append(f"{c.id:>4} {parents:>7} {c.island:>3} {c.status:<8} "
                     f"{_num(values.get('combined_score'), 4):>8} {_num(values.get('balancedness'), 4):>7} "
                     f"{_num(values.get('runtime_ms'), 1):>9}  {c.name}"
                     + (f"  [{ev.error}]" if ev and not ev.valid and ev.error else ""))
    return "\n".join(lines)


def render_candidate(c: Candidate, diff: str) -> str:
    ev = c.evaluation
    head = [f"candidate {c.id}: {c.name}   ({c.status}, island {c.island}, parents "
            f"{', '.join(map(str, c.parent_ids)) or 'none'}, attempt {c.iteration}, model {c.model or '-'})",
            f"commit {c.commit}", "", c.description.strip(), ""]
    if ev is not None:
        head.append(f"combined {ev.combined_score:.4f}  balancedness {ev.balancedness:.4f}  slot "
                    f"{ev.balancedness_slot:.4f}  in-sample {ev.balancedness_insample:.4f}  runtime "
                    f"{ev.runtime_ms:.2f} ms  speedup {_num(ev.speedup_vs_seed, 2)}  ({ev.suite}, {ev.device})")
        head += ["", ev.feedback.strip(), ""]
    return "\n".join(head + [diff or "(no diff: the seed)"])


def _best(candidates: list[Candidate]) -> Candidate:
    best = best_of(candidates)
    if best is None:
        raise UserError("the run has no valid candidate yet")
    return best


def _export(path: Path, code: str) -> None:
    try:
        atomic_write(path, code)
    except OSError as error:
        raise UserError(f"--export {path}: cannot write ({error.strerror})") from None


def run(args: argparse.Namespace) -> int:
    path = resolve_run(args.run_name, args.runs_dir)
    with RunStore.open(path, readonly=True) as store:
        candidates = store.load_candidates()
        if args.command == "log":
            print(json.dumps([_row(c) for c in candidates], indent=1) if args.json else render_log(candidates))
        elif args.command == "show":
            diff = store.diff(args.candidate_id)
            print(render_candidate(next(c for c in candidates if c.id == args.candidate_id), diff))
        else:
            best = _best(candidates)
            if args.export:
                _export(args.export, best.code)
            if args.json:
                print(json.dumps({**_row(best), "program": best.code}, indent=1))
            else:
                print(render_log([best]) + (f"\nexported to {args.export}" if args.export else ""))
    return 0
