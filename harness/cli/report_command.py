"""`eplb-evolve report RUN`: figures and REPORT.md for a run, finished, interrupted or still going.

Writes into RUN/report/ (a folder that ignores itself in Git through its own `.gitignore`, so the
run's work tree stays clean whatever version of the run's `.gitignore` it has):

    REPORT.md       configuration, budget, top programs on search and held-out windows, commands
    progress.png    running best and median per island over attempts
    pareto.png      balancedness against runtime: candidates, Pareto front, seed, baselines
    lineage.png     the best program's ancestry, seed to best
    evaluations.json  the evaluations made here (baselines; held-out scores), reused next time

The run is opened read-only and without its lock, so a search can keep writing while the report
reads. The evaluations the report makes (baselines on the run's suite, the top programs, the seed
and the baselines on held-out windows) use the run's own evaluator settings.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from evaluator.baselines import baseline_label, baseline_paths
from evaluator.errors import UserError
from evaluator.evaluate import EvalOptions, evaluate
from evaluator.records import Evaluation
from evaluator.workloads.scenarios import Scenario, suite
from harness.cli.run_setup import eval_options
from harness.config.settings import load_config
from harness.report import summary as report
from harness.store.candidate import Candidate, best_of, code_hash, ranked
from harness.store.files import atomic_write
from harness.store.run_store import CONFIG, RunStore, resolve_run

REPORT_DIR = "report"
CACHE = "evaluations.json"


class EvaluationCache:
    """Evaluations made for reports, kept in the report folder by suite, windows, settings and code.

    Why: a baseline or a held-out evaluation costs seconds to a minute; a second report of the same
    run, or of a run that has grown since, re-evaluates only programs it has not met. Programs are
    keyed by their normalised code hash, so a comment-only change is not re-evaluated either.
    """

    def __init__(self, path: Path, suite_name: str, scenarios: list[Scenario], options: EvalOptions) -> None:
        self.path = path
        self._suite, self._scenarios, self._options = suite_name, scenarios, options
        try:
            self._entries: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._entries = {}

    def _key(self, code: str, heldout: bool) -> str:
        o = self._options
        return (f"{self._suite}|{'heldout' if heldout else 'search'}|{o.device}|threads={o.limits.threads}|"
                f"period={o.rebalance_period_s:g}|{code_hash(code)}")

    def evaluate(self, code: str, label: str, heldout: bool) -> Evaluation:
        key = self._key(code, heldout)
        if key in self._entries:
            return Evaluation.from_dict(self._entries[key])
        windows = "held-out" if heldout else "search"
        print(f"report: evaluating {label} on the '{self._suite}' suite's {windows} windows ...", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="eplb-report-") as folder:
            program = Path(folder) / "program.py"
            program.write_text(code, encoding="utf-8")
            result = evaluate(program, self._scenarios, self._suite, replace(self._options, heldout=heldout))
        self._entries[key] = result.to_dict()
        self._save()
        return result

    def _save(self) -> None:
        """Atomically, after every evaluation: an interrupted report keeps what it measured."""
        atomic_write(self.path, json.dumps(self._entries, indent=1))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="write figures and REPORT.md for a run (finished, interrupted or still going)",
        description="Plot a run's progress, its balancedness-runtime trade-off and the best program's lineage, "
                    "and write REPORT.md with its budget and top programs on search and held-out windows. "
                    "Files go to RUN/report/.")
    p.add_argument("run_name", metavar="RUN", help="a run name under --runs-dir, or a run directory")
    p.add_argument("--runs-dir", default="runs", help="where run directories live (default: runs)")
    p.add_argument("--heldout", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate the top programs, the seed and the baselines on held-out windows "
                        "(default: yes)")
    p.add_argument("--top", type=int, default=5, metavar="N", help="programs in the table (default 5)")
    p.add_argument("--json", action="store_true", help="print where the files went and the table as JSON")


def _plots() -> ModuleType:
    try:
        from harness.report import plots as report_plots
    except ImportError as missing:
        raise UserError(f"the report needs matplotlib ({missing}); install it with: "
                        f"pip install 'eplb-evolve[report]'") from None
    return report_plots


def _read_run(path: Path) -> tuple[list[Candidate], list[dict[str, Any]], str, int | None]:
    with RunStore.open(path, readonly=True) as store:
        candidates, journal, secret = store.load_candidates(), store.load_journal(), store.secret
        try:
            config_text = store.config_path.read_text(encoding="utf-8")
        except OSError as error:
            raise UserError(f"{store.config_path}: cannot read the run's configuration ({error})") from None
    return candidates, journal, config_text, secret


def _rows(candidates: list[Candidate], top: int, baselines: list[tuple[str, str, Evaluation]],
          cache: EvaluationCache, heldout: bool) -> tuple[report.Row, ...]:
    """The top programs, then the seed (if not among them) and the baselines, held-out scores added."""
    chosen = ranked(candidates)[:top]
    chosen += [c for c in candidates if not c.parent_ids and c not in chosen]
    rows = []
    for c in chosen:
        label = f"#{c.id} {c.name}"
        assert c.evaluation is not None
        rows.append(report.Row(label, c, c.evaluation, cache.evaluate(c.code, label, True) if heldout else None))
    for label, code, evaluation in baselines:
        rows.append(report.Row(label, None, evaluation, cache.evaluate(code, label, True) if heldout else None))
    return tuple(rows)


def _report_folder(run: Path) -> Path:
    """RUN/report/, ignoring itself in Git: the run's own .gitignore (in every commit) stays as it was."""
    out = run / REPORT_DIR
    try:
        out.mkdir(exist_ok=True)
        (out / ".gitignore").write_text("# written by eplb-evolve report: not part of the run's history\n*\n")
    except OSError as error:
        raise UserError(f"cannot write the report into {out}: {error.strerror or error}") from None
    return out


def _baselines(cache: EvaluationCache) -> list[tuple[str, str, Evaluation]]:
    """(label, code, evaluation on the run's search windows) of each baseline program."""
    found = []
    for program in baseline_paths():
        code = program.read_text(encoding="utf-8")
        found.append((baseline_label(program), code, cache.evaluate(code, baseline_label(program), False)))
    return found


def _figures(plots: ModuleType, out: Path, candidates: list[Candidate], journal: list[dict[str, Any]],
             islands: int, baselines: list[tuple[str, str, Evaluation]]) -> tuple[tuple[str, Path], ...]:
    """Draw the three figures; returns (caption, file) of each."""
    best = best_of(candidates)
    assert best is not None, "a run's seed is valid by construction"
    progress = report.progress(candidates, islands)
    pareto = report.pareto_view(candidates, [(label, ev) for label, _, ev in baselines])
    return (
        ("Best and median scores per island over attempts",
         plots.plot_progress(progress, report.last_attempt(candidates, journal), out / "progress.png")),
        ("Balancedness against runtime, with the seed and the baselines",
         plots.plot_pareto(pareto, out / "pareto.png")),
        (f"Lineage of the best program, #{best.id} {best.name}",
         plots.plot_lineage(report.lineage(candidates, best.id), out / "lineage.png")),
    )


def _to_json(markdown: Path, figures: tuple[tuple[str, Path], ...], rows: tuple[report.Row, ...]) -> str:
    return json.dumps({"report": str(markdown), "figures": [str(f) for _, f in figures], "rows": [
        {"label": r.label, "candidate_id": r.candidate.id if r.candidate else None,
         "search": r.search.to_dict(), "heldout": r.heldout.to_dict() if r.heldout else None}
        for r in rows]}, indent=1)


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UserError(f"--top {args.top}: show at least one program")
    plots = _plots()
    path = resolve_run(args.run_name, args.runs_dir)
    candidates, journal, config_text, secret = _read_run(path)
    config = load_config(path / CONFIG)
    out = _report_folder(path)
    suite_name = config.evaluator.suite
    # The run's own windows (its secret), so the baselines' and held-out figures stand beside its scores.
    cache = EvaluationCache(out / CACHE, suite_name, suite(suite_name, secret), eval_options(config))
    baselines = _baselines(cache)
    rows = _rows(candidates, args.top, baselines, cache, args.heldout)
    figures = _figures(plots, out, candidates, journal, config.population.islands, baselines)
    data = report.ReportData(
        run=str(path), config_text=config_text, budget=report.budget(candidates, journal), rows=rows,
        figures=tuple((caption, file.name) for caption, file in figures), heldout=args.heldout,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    markdown = out / "REPORT.md"
    atomic_write(markdown, report.render_markdown(data))
    if args.json:
        print(_to_json(markdown, figures, rows))
    else:
        print("\n".join(f"wrote {f}" for f in (markdown, *(file for _, file in figures))))
    return 0
