"""What a run report shows, as plain data, and its Markdown (pure: no files, no Git, no plotting).

`report_command` reads the run and evaluates what needs evaluating; everything it hands over is
turned into figures' data and REPORT.md here, so each can be tested from small records alone.

Two readings shape the choices below:
* Islands evolve apart, so progress is drawn per island; the seed starts on every island, so each
  island's line starts from it at attempt 0.
* A search can overfit its windows. Held-out windows differ from search windows, so absolute
  scores are not comparable across the two; the gain over the seed on the same windows is. A
  program whose gain shrinks on held-out windows learnt the search windows, not the problem.
"""
from __future__ import annotations

import bisect
import shlex
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from evaluator.records import Evaluation
from harness.search.pareto import ParetoArchive
from harness.store.candidate import Candidate, best_of, metrics
from harness.store.journal import Spend, outcomes, spend

# -- budget --------------------------------------------------------------------------------------

# How the budget counts an attempt whose calls are journaled but whose outcome line is not (yet):
# one still running, or one cut short whose run has not been resumed since.
UNFINISHED = "unfinished"

@dataclass(frozen=True)
class Budget:
    """What the run has spent so far. Attempts are proposals tried (the seed's attempt 0 excluded)."""

    attempts: int
    statuses: dict[str, int]  # attempts by outcome: valid, invalid, patch_failed, duplicate, ...
    candidates: int  # programs evaluated, the seed excluded
    valid: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    wall_s: float | None  # first to last journal timestamp (pauses between sessions included)

    @property
    def valid_rate(self) -> float | None:
        return self.valid / self.candidates if self.candidates else None


def budget(candidates: list[Candidate], journal: list[dict[str, Any]]) -> Budget:
    """Totals from the journal, completed by the candidates themselves: a run killed between a commit
    and its journal line (or one being written now) still counts every committed candidate, and an
    attempt still going (or cut short and not resumed yet) counts the calls it has made, as
    UNFINISHED. Every model call is counted once (`journal.spend`)."""
    by_attempt = outcomes(journal)
    for c in candidates:
        by_attempt.setdefault(c.iteration, {"status": c.status, "prompt_tokens": c.prompt_tokens,
                                            "completion_tokens": c.completion_tokens, "cost": c.cost,
                                            "timestamp": c.created_at})
    spent = {a: s for a, s in spend(journal, by_attempt).items() if a >= 1}
    statuses = Counter(str(by_attempt.get(a, {}).get("status", UNFINISHED)) for a in spent)
    stamps = {float(e["timestamp"]) for e in [*journal, *by_attempt.values()]
              if isinstance(e.get("timestamp"), (int, float))}
    children = [c for c in candidates if c.parent_ids]
    total = sum(spent.values(), Spend())
    return Budget(
        attempts=len(spent), statuses=dict(statuses.most_common()),
        candidates=len(children), valid=sum(c.valid for c in children),
        prompt_tokens=total.prompt_tokens, completion_tokens=total.completion_tokens, cost=total.cost,
        wall_s=max(stamps) - min(stamps) if len(stamps) > 1 else None)


def last_attempt(candidates: list[Candidate], journal: list[dict[str, Any]]) -> int:
    """The highest attempt number seen so far (where progress lines end)."""
    attempts = [e["attempt"] for e in journal if isinstance(e.get("attempt"), int)]
    return max([0, *attempts, *(c.iteration for c in candidates)])


# -- progress over attempts ----------------------------------------------------------------------

@dataclass(frozen=True)
class IslandSeries:
    """An island's running best and median after each of its valid candidates, by attempt number."""

    island: int
    attempts: tuple[int, ...]
    score: tuple[float, ...]  # each candidate's own combined score
    balancedness: tuple[float, ...]
    best_score: tuple[float, ...]
    median_score: tuple[float, ...]
    best_balancedness: tuple[float, ...]
    median_balancedness: tuple[float, ...]


def _running(values: list[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(running max, running median) of a sequence."""
    seen: list[float] = []
    best, median = [], []
    for value in values:
        bisect.insort(seen, value)
        best.append(seen[-1])
        median.append(statistics.median(seen))
    return tuple(best), tuple(median)


def progress(candidates: list[Candidate], islands: int) -> list[IslandSeries]:
    """One series per island (islands with no candidate yet show the seed alone)."""
    valid = sorted((c for c in candidates if c.valid), key=lambda c: (c.iteration, c.id))
    roots = [c for c in valid if not c.parent_ids]
    count = max([islands, *(c.island + 1 for c in candidates)])
    series = []
    for island in range(count):
        members = roots + [c for c in valid if c.parent_ids and c.island == island]
        scores = [c.evaluation.combined_score for c in members if c.evaluation is not None]
        balancedness = [c.evaluation.balancedness for c in members if c.evaluation is not None]
        series.append(IslandSeries(island, tuple(c.iteration for c in members), tuple(scores),
                                   tuple(balancedness), *_running(scores), *_running(balancedness)))
    return series


# -- balancedness against runtime ----------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """A program on the balancedness-runtime plane."""

    label: str
    runtime_ms: float
    balancedness: float
    island: int | None = None  # None for an anchor (a baseline)


@dataclass(frozen=True)
class ParetoView:
    dots: tuple[Point, ...]  # every valid candidate
    front: tuple[Point, ...]  # the non-dominated ones, fastest first
    seed: Point | None
    best: Point | None
    anchors: tuple[Point, ...]  # valid baselines, evaluated on the run's suite


def _point(c: Candidate) -> Point:
    assert c.evaluation is not None
    return Point(f"#{c.id}", c.evaluation.runtime_ms, c.evaluation.balancedness, c.island)


def pareto_view(candidates: list[Candidate], baselines: list[tuple[str, Evaluation]]) -> ParetoView:
    valid = [c for c in candidates if c.valid]
    archive = ParetoArchive()
    for c in valid:
        archive.add(c)
    front = sorted((_point(c) for c in archive.members), key=lambda p: p.runtime_ms)
    seed = next((c for c in valid if not c.parent_ids), None)
    best = best_of(candidates)
    anchors = tuple(Point(label, ev.runtime_ms, ev.balancedness) for label, ev in baselines if ev.valid)
    return ParetoView(tuple(_point(c) for c in valid), tuple(front), _point(seed) if seed else None,
                      _point(best) if best else None, anchors)


# -- lineage ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LineageNode:
    id: int
    name: str
    score: float
    layer: int  # generations from the seed along the first-parent chain
    on_chain: bool  # False: a second parent (crossover mate) joining the chain


@dataclass(frozen=True)
class Lineage:
    nodes: tuple[LineageNode, ...]
    edges: tuple[tuple[int, int], ...]  # (parent id, child id)


def lineage(candidates: list[Candidate], best_id: int) -> Lineage:
    """The first-parent chain from the seed down to `best_id`, with each crossover's other parent
    drawn beside the child it joined (its own ancestry is left out: the picture stays a chain one
    step wide however many crossovers the run made)."""
    by_id = {c.id: c for c in candidates}
    chain = [by_id[best_id]]
    while chain[-1].parent_ids:
        chain.append(by_id[chain[-1].parent_ids[0]])
    chain.reverse()
    nodes = [LineageNode(c.id, c.name, c.score, layer, True) for layer, c in enumerate(chain)]
    placed = {c.id for c in chain}
    edges = []
    for layer, child in enumerate(chain):
        for parent in child.parent_ids:
            edges.append((parent, child.id))
            if parent not in placed:
                mate = by_id[parent]
                nodes.append(LineageNode(mate.id, mate.name, mate.score, layer - 1, False))
                placed.add(parent)
    return Lineage(tuple(nodes), tuple(edges))


# -- REPORT.md -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """A program in the results table: a top candidate, the seed or a baseline (`candidate` None)."""

    label: str
    candidate: Candidate | None
    search: Evaluation
    heldout: Evaluation | None  # None when held-out windows were not evaluated


@dataclass(frozen=True)
class ReportData:
    run: str  # the run directory as commands should name it
    config_text: str
    budget: Budget
    rows: tuple[Row, ...]  # the top programs, then the seed and the baselines as anchors
    figures: tuple[tuple[str, str], ...]  # (caption, file name beside REPORT.md)
    heldout: bool
    generated: str  # when, as text


def _f(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _gain(ev: Evaluation | None, seed: Evaluation | None) -> float | None:
    if ev is None or seed is None or not (ev.valid and seed.valid):
        return None
    return ev.balancedness - seed.balancedness


def _cells(ev: Evaluation | None) -> tuple[float | None, float | None]:
    """(combined, balancedness) of an evaluation, None when missing or invalid."""
    values = metrics(ev)
    return values.get("combined_score"), values.get("balancedness")


def _cell_text(text: str) -> str:
    """A model-chosen NAME must not break the Markdown table."""
    return text.replace("|", "\\|").replace("\n", " ")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _budget_lines(b: Budget) -> list[str]:
    statuses = ", ".join(f"{n} {s}" for s, n in b.statuses.items()) or "none yet"
    span = _duration(b.wall_s) if b.wall_s is not None else "-"
    rate = f"{b.valid_rate:.0%}" if b.valid_rate is not None else "-"
    return [f"- attempts (proposals tried): {b.attempts} ({statuses})",
            f"- candidates evaluated (the seed excluded): {b.candidates}, valid: {b.valid} ({rate})",
            f"- tokens: {b.prompt_tokens} prompt + {b.completion_tokens} completion; cost: ${b.cost:.4f}",
            f"- wall time, first to last journal entry (pauses between sessions included): {span}"]


def _seed_row(rows: tuple[Row, ...]) -> Row | None:
    return next((r for r in rows if r.candidate is not None and not r.candidate.parent_ids), None)


def _verdict(rows: tuple[Row, ...]) -> str:
    """One line on the best so far against the seed (rows start with the best candidate)."""
    best, seed = rows[0].candidate, _seed_row(rows)
    if best is None or seed is None or not best.parent_ids:
        children = any(r.candidate is not None and r.candidate.parent_ids for r in rows)
        return ("No candidate beats the seed's combined score yet." if children else
                "No valid candidate besides the seed yet: the table holds the anchors only.")
    ours, theirs = rows[0].search.combined_score, seed.search.combined_score
    return (f"Best so far: #{best.id} `{best.name}`, combined score {ours:.4f} against the seed's {theirs:.4f} "
            f"({(ours / theirs - 1) * 100:+.1f}%).")


def _table(rows: tuple[Row, ...], heldout: bool) -> list[str]:
    seed = _seed_row(rows)
    head = ["program", "island", "attempt", "combined", "balancedness", "gain vs seed", "efficiency", "migrated",
            "nodes/token", "runtime ms"]
    if heldout:
        head[3:6] = ["combined search", "combined held-out", "bal. search", "bal. held-out",
                     "gain vs seed search", "gain vs seed held-out"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c = r.candidate
        name = _cell_text(f"#{c.id} `{c.name}`" if c is not None else r.label)
        where = [str(c.island), str(c.iteration)] if c is not None else ["-", "-"]
        (combined, bal), (h_combined, h_bal) = _cells(r.search), _cells(r.heldout)
        gain = _f(_gain(r.search, seed.search if seed else None), signed=True)
        cells = [_f(combined), _f(bal), gain]
        if heldout:
            h_gain = _f(_gain(r.heldout, seed.heldout if seed else None), signed=True)
            cells = [_f(combined), _f(h_combined), _f(bal), _f(h_bal), gain, h_gain]
        runtime = _f(r.search.runtime_ms, 2) if r.search.valid else "invalid"
        lines.append("| " + " | ".join([name, *where, *cells, *_deployment_cells(r.search), runtime]) + " |")
    return lines


def _deployment_cells(evaluation: Evaluation) -> list[str]:
    """Efficiency, migrated fraction and nodes per token on the search windows ("-" for older records)."""
    d = evaluation.deployment if evaluation.valid else None
    if d is None:
        return ["-", "-", "-"]
    return [_f(d.efficiency), f"{d.migrated_fraction:.1%}", _f(d.nodes_per_token, 2)]


def _failures(rows: tuple[Row, ...]) -> list[str]:
    notes = [f"- {r.label}: invalid on the search windows: {r.search.error}" for r in rows if not r.search.valid]
    notes += [f"- {r.label}: invalid on the held-out windows: {r.heldout.error}" for r in rows
              if r.heldout is not None and not r.heldout.valid]
    return ["", *notes] if notes else []


def _commands(run: str, rows: tuple[Row, ...]) -> list[str]:
    quoted = shlex.quote(run)
    lines = ["```sh"]
    for c in (r.candidate for r in rows if r.candidate is not None and r.candidate.parent_ids):
        lines += [f"# #{c.id} {c.name}",
                  f"git -C {quoted} show refs/candidates/{c.id:06d}",
                  f"eplb-evolve show {quoted} {c.id}",
                  f"git -C {quoted} diff refs/candidates/000000 refs/candidates/{c.id:06d} -- program.py"]
    return lines + ["```"] if len(lines) > 1 else []


def render_markdown(data: ReportData) -> str:
    """REPORT.md: configuration, budget, figures, top programs against the anchors, how to see them."""
    lines = [f"# Run report: {data.run}", "",
             f"Generated {data.generated}. The run may still be going: run `eplb-evolve report` again to "
             f"refresh (evaluations are cached in `evaluations.json` beside this file; delete it to re-measure).",
             "", "## Budget used", "", *_budget_lines(data.budget), "", "## Figures", ""]
    for caption, name in data.figures:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    lines += ["## Top programs", ""]
    if data.heldout:
        lines += ["Scores on the search windows and on held-out windows the search never saw. The windows "
                  "differ, so compare the *gain over the seed* (GPU balancedness on the next window) "
                  "between the two: a gain that shrinks on held-out windows is overfitting.", ""]
    lines += [_verdict(data.rows), ""]
    lines += [*_table(data.rows, data.heldout), *_failures(data.rows), "", "## See the programs", ""]
    lines += _commands(data.run, data.rows) or ["Only the seed so far."]
    lines += ["", "## Configuration (config.toml)", "", "```toml", data.config_text.rstrip(), "```", ""]
    return "\n".join(lines)
