"""The one record of a candidate program, the code hash that makes duplicates recognisable, and the
two rules every reader of a run shares: which metrics an evaluation is summed up by, and which
candidate is best.

A `Candidate` is what the population ranks, what the store commits and what the prompts show;
it is serialised here and nowhere else (`to_dict` / `from_dict`), so the journal, the commit's
`metrics.json` and `--json` output never disagree about a field. `metrics` is the one
Evaluation -> numbers conversion (prompts, commit trailers, the journal, `log --json`, the report),
and `rank_key` the one ranking (the population, `best`, the report), so no two of them can disagree.

Duplicates: models often return the parent again with a reworded comment or reflowed lines.
`code_hash` hashes the *normalised* program (its syntax tree, unparsed, without comments and
docstrings), so such a "new" program is recognised and never evaluated a second time.
"""
from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from evaluator.records import Evaluation
from harness.store.status import Status

# The headline metrics of an evaluation, with the decimals they are written with, in the order
# people read them. Everything that sums an evaluation up shows exactly these: the prompt (the
# parent's and inspirations' scores), the commit trailers (`Combined-Score: 0.8123`), the journal's
# evaluation summary, `log --json` and the report. A new field of `Evaluation` added here appears
# in all of them.
HEADLINE: dict[str, int] = {
    "combined_score": 4, "efficiency": 4, "balancedness": 4, "fresh_balancedness": 4, "migrated_fraction": 4,
    "nodes_per_token": 3, "balancedness_slot": 4, "runtime_ms": 3, "speedup_vs_seed": 2,
}


def _strip_docstrings(tree: ast.AST) -> None:
    """Drop docstrings in place: they change no behaviour worth evaluating twice."""
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]


def normalise_code(code: str) -> str:
    """Canonical source: formatting, comments, blank lines and docstrings removed.

    Code that does not parse (a broken candidate) falls back to its lines with trailing
    whitespace and blank lines removed, so trivially reflowed broken programs still match.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return "\n".join(line.rstrip() for line in code.splitlines() if line.strip())
    _strip_docstrings(tree)
    return ast.unparse(tree)


def code_hash(code: str) -> str:
    """Short content hash of the normalised program (64 bits: no collision at search scale)."""
    return hashlib.sha256(normalise_code(code).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Candidate:
    """One evaluated program of a run.

    `id` counts candidates in commit order (0 is the seed). `iteration` is the attempt number
    that produced it (the journal's `attempt`; 0 for the seed): ids count what was evaluated,
    iterations count what was tried, and the two differ once proposals fail to parse or apply.
    `island` is where it lives and breeds. `commit` is its Git commit, set by the store.
    """

    id: int
    parent_ids: tuple[int, ...]
    island: int
    name: str
    description: str
    code: str
    code_hash: str
    status: Status
    evaluation: Evaluation | None
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    iteration: int
    created_at: float
    commit: str = ""

    @property
    def valid(self) -> bool:
        return self.status == Status.VALID and self.evaluation is not None and self.evaluation.valid

    @property
    def score(self) -> float:
        """The fitness the search maximises; 0 for anything that did not evaluate cleanly."""
        return self.evaluation.combined_score if self.valid and self.evaluation else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "parent_ids": list(self.parent_ids), "island": self.island,
            "name": self.name, "description": self.description, "code": self.code,
            "code_hash": self.code_hash, "status": self.status,
            "evaluation": self.evaluation.to_dict() if self.evaluation else None,
            "model": self.model, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "cost": self.cost,
            "iteration": self.iteration, "created_at": self.created_at, "commit": self.commit,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Candidate:
        evaluation = data.get("evaluation")
        return Candidate(
            id=int(data["id"]), parent_ids=tuple(int(p) for p in data["parent_ids"]),
            island=int(data["island"]), name=str(data["name"]), description=str(data["description"]),
            code=str(data["code"]), code_hash=str(data["code_hash"]), status=Status(data["status"]),
            evaluation=Evaluation.from_dict(evaluation) if evaluation is not None else None,
            model=str(data["model"]), prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]), cost=float(data["cost"]),
            iteration=int(data["iteration"]), created_at=float(data["created_at"]),
            commit=str(data.get("commit", "")),
        )


def metrics(evaluation: Evaluation | None) -> dict[str, float]:
    """The headline metrics (`HEADLINE`) of a valid evaluation, those it has (None values are left
    out); {} for no evaluation or an invalid one, whose numbers mean nothing."""
    if evaluation is None or not evaluation.valid:
        return {}
    values = {name: getattr(evaluation, name) for name in HEADLINE}
    return {name: float(value) for name, value in values.items() if value is not None}


def rank_key(candidate: Candidate) -> tuple[float, int]:
    """How candidates rank, best first: the higher score, then the older candidate (lower id), so
    the best never changes to a later program that only ties it."""
    return (-candidate.score, candidate.id)


def ranked(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The valid candidates, best first (invalid ones are never ranked)."""
    return sorted((c for c in candidates if c.valid), key=rank_key)


def best_of(candidates: Iterable[Candidate]) -> Candidate | None:
    """The best valid candidate, or None when there is none."""
    return min((c for c in candidates if c.valid), key=rank_key, default=None)
