"""The offline proposer: real edit operators instead of a model, in the model's response format.

Used when no model is configured (and by tests). Its answers go through the same parser, patch
engine, evaluation and journal as a model's, so an offline run exercises the whole harness.

Operators:
* crossover, when the controller asks for it: a Git three-way merge (`git merge-file`) of the
  parent's and the other candidate's changes since their common ancestor. A clean merge that
  adds something becomes a `<CODE>` answer; a conflict falls back to the mix below, and the
  DESCRIPTION says so.
* a library move (`moves.py`): a known EPLB idea as SEARCH/REPLACE blocks;
* a constant perturbation: one tunable numeric literal inside an EVOLVE block is scaled.

The mix: with probability LIBRARY_SHARE (0.75) a library move is drawn among those that apply
to the parent, weighted by their prior weights; otherwise (or when none applies) a tunable
constant is perturbed. The seed has no tunable constants, so its first children are all
library moves, the ones that raise efficiency (vectorised packing, keeping GPUs in place,
keeping layers that still fit, smoothing loads) drawn 11 times in 14: a 30-iteration run meets
them within its first few proposals. Moves that add constants (load shrinking's exponent,
refinement rounds, the slack of a kept layer, the memory of the load average) hand them on to
perturbation for tuning.

Deterministic: every random choice comes from a generator seeded by the request's seed and the
conversation's length (a fix attempt after a failed patch gets a different, still reproducible draw).
"""
from __future__ import annotations

import ast
import random
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from evaluator.errors import UserError
from harness.diff.guards import find_regions
from harness.proposers.base import Proposal, ProposalRequest, ProposerError
from harness.proposers.moves import Move, applicable

MODEL_NAME = "mutate"
LIBRARY_SHARE = 0.75
SCALE_FACTORS = (0.5, 0.8, 0.9, 0.95, 1.05, 1.1, 1.25, 2.0)
_SHAPE_KEYWORDS = frozenset({"dim", "dims", "axis", "dtype", "device", "stable", "descending", "keepdim"})

Edit = tuple[str, str]


@dataclass(frozen=True)
class Constant:
    """A numeric literal worth tuning: where it is (0-based line, character columns) and its role."""

    line: int
    start: int
    end: int
    value: int | float
    role: str  # the name it is bound to ("rounds", "alpha") or "constant"


def format_response(name: str, description: str, edits: Sequence[Edit] = (), code: str | None = None) -> str:
    """An answer in the shared format: NAME, DESCRIPTION, then a DIFF of blocks or a full CODE."""
    head = f"<NAME>\n{name}\n</NAME>\n\n<DESCRIPTION>\n{description}\n</DESCRIPTION>\n\n"
    if code is not None:
        return head + f"<CODE>\n{code}</CODE>\n"
    blocks = "".join(f"<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n" for search, replace in edits)
    return head + f"<DIFF>\n{blocks}</DIFF>\n"


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _role(literal: ast.Constant, parents: dict[ast.AST, ast.AST]) -> str | None:
    """The name a literal is bound to if it is a tunable setting, else None.

    Tunable: a float anywhere but a shape keyword; an int (other than 0 and 1) bound to a name by
    an assignment, a keyword argument or a parameter default. Other ints are indexes, dims and
    sizes, whose change breaks a program rather than tuning it.
    """
    anchor: ast.AST = literal
    holder = parents.get(anchor)
    if isinstance(holder, ast.UnaryOp):  # -2.5 is UnaryOp(USub, Constant(2.5))
        anchor, holder = holder, parents.get(holder)
    if isinstance(holder, ast.keyword):
        return None if holder.arg in _SHAPE_KEYWORDS else holder.arg
    if isinstance(holder, (ast.Assign, ast.AnnAssign)):
        target = holder.targets[0] if isinstance(holder, ast.Assign) else holder.target
        return target.id if isinstance(target, ast.Name) else "constant"
    if isinstance(holder, ast.arguments):
        positional = holder.posonlyargs + holder.args
        pairs = list(zip(positional[len(positional) - len(holder.defaults):], holder.defaults))
        pairs += [(arg, default) for arg, default in zip(holder.kwonlyargs, holder.kw_defaults) if default is not None]
        return next((arg.arg for arg, default in pairs if default is anchor), "constant")
    return "constant" if isinstance(literal.value, float) else None


def tunable_constants(code: str) -> list[Constant]:
    """The tunable numeric literals inside the EVOLVE blocks of `code`, in source order."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    lines = code.split("\n")
    regions = find_regions(lines)
    parents = _parents(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or isinstance(node.value, bool) or \
                not isinstance(node.value, (int, float)) or node.value in (0, 1):
            continue
        line = node.lineno - 1
        if node.end_lineno != node.lineno or not any(r.start < line < r.end for r in regions):
            continue
        role = _role(node, parents)
        if role is not None:
            raw = lines[line].encode("utf-8")  # ast columns count UTF-8 bytes
            start = len(raw[:node.col_offset].decode("utf-8"))
            end = len(raw[:node.end_col_offset].decode("utf-8"))
            found.append(Constant(line, start, end, node.value, role))
    return sorted(found, key=lambda c: (c.line, c.start))


def perturbed(value: int | float, rng: random.Random) -> tuple[str, float]:
    """A new literal for the magnitude `value` (scaled by a random factor; ints stay ints >= 1), and the factor."""
    factor = rng.choice(SCALE_FACTORS)
    if isinstance(value, float):
        text = f"{value * factor:.4g}"
        return (text if any(c in text for c in ".en") else text + ".0"), factor
    new = round(value * factor)
    if new == value:
        new = value + (1 if factor > 1 else -1)
    return str(max(new, 1)), factor


def _occurrences(lines: Sequence[str], window: Sequence[str]) -> int:
    size = len(window)
    return sum(1 for i in range(len(lines) - size + 1) if list(lines[i:i + size]) == list(window))


def unique_span(lines: Sequence[str], line: int, low: int, high: int) -> tuple[int, int] | None:
    """Lines [a, b) around `line`, within [low, high), whose text occurs once in the program.

    Grows one line at a time, alternately below and above, so a SEARCH quotes as little as
    possible; None when even the whole allowed range is not unique.
    """
    a, b = line, line + 1
    grow_down = True
    while _occurrences(lines, lines[a:b]) != 1:
        if grow_down and b < high:
            b += 1
        elif a > low:
            a -= 1
        elif b < high:
            b += 1
        else:
            return None
        grow_down = not grow_down
    return a, b


def perturbation(code: str, rng: random.Random) -> tuple[str, str, Edit] | None:
    """(name, description, edit) scaling one tunable constant, or None when there is none."""
    lines = code.split("\n")
    regions = find_regions(lines)
    candidates = tunable_constants(code)
    rng.shuffle(candidates)
    for constant in candidates:
        region = next(r for r in regions if r.start < constant.line < r.end)
        span = unique_span(lines, constant.line, region.start + 1, region.end)
        if span is None:
            continue
        old_line = lines[constant.line]
        old_text = old_line[constant.start:constant.end]
        new_text, factor = perturbed(constant.value, rng)
        new_line = old_line[:constant.start] + new_text + old_line[constant.end:]
        search = lines[span[0]:span[1]]
        replace = [new_line if i == constant.line else lines[i] for i in range(*span)]
        name = "tune_" + re.sub(r"\W+", "_", constant.role).strip("_").lower()
        description = (f"Tune `{constant.role}`: {old_text} -> {new_text} (x{factor:g}) on line "
                       f"{constant.line + 1}: `{old_line.strip()}`.")
        return name, description, ("".join(s + "\n" for s in search), "".join(r + "\n" for r in replace))
    return None


def three_way_merge(parent: str, other: str, ancestor: str) -> tuple[str, int]:
    """`git merge-file -p parent ancestor other`: the merged text and the number of conflicts."""
    with tempfile.TemporaryDirectory(prefix="eplb-merge-") as tmp:
        paths = []
        for label, text in (("parent", parent), ("ancestor", ancestor), ("other", other)):
            path = Path(tmp) / f"{label}.py"
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        try:
            status, merged, stderr = git.Git(tmp).merge_file(
                "-p", "-L", "parent", "-L", "ancestor", "-L", "other", *paths,
                with_extended_output=True, with_exceptions=False, strip_newline_in_stdout=False)
        except git.GitCommandNotFound:
            raise UserError("crossover needs the git executable; install git or set crossover_rate = 0") from None
    if status < 0 or status > 127:
        raise ProposerError(f"mutate: git merge-file failed ({status}): {stderr.strip()}")
    return merged, status


class MutateProposer:
    """Proposals from the operators above; no network, no cost, reproducible from the seed."""

    name = "mutate"

    def propose(self, request: ProposalRequest) -> Proposal:
        started = time.monotonic()
        rng = random.Random(f"{MODEL_NAME}:{request.seed}:{len(request.messages)}")
        text = self._answer(request, rng)
        return Proposal(text=text, model=MODEL_NAME, prompt_tokens=0, completion_tokens=0, cost=0.0,
                        latency_s=time.monotonic() - started, finish_reason="stop")

    def _answer(self, request: ProposalRequest, rng: random.Random) -> str:
        parent, note = request.parent_code, ""
        if request.crossover is not None:
            other, ancestor = request.crossover
            merged, conflicts = three_way_merge(parent, other, ancestor)
            if conflicts == 0 and merged != parent:
                return format_response("crossover", "Git three-way merge of this program's changes and another "
                                       "candidate's changes since their common ancestor.", code=merged)
            why = f"conflicted in {conflicts} place(s)" if conflicts else "added nothing new"
            note = f"Crossover {why}; fell back to another operator. "
        moves = applicable(parent)
        if moves and (rng.random() < LIBRARY_SHARE or not tunable_constants(parent)):
            move = _draw(moves, rng)
            return format_response(move.name, note + move.description, move.edits_for(parent))
        tuned = perturbation(parent, rng)
        if tuned is not None:
            name, description, edit = tuned
            return format_response(name, note + description, (edit,))
        raise ProposerError("mutate: nothing to propose: no library move applies to this program and its "
                            "EVOLVE block has no tunable constant")


def _draw(moves: Sequence[Move], rng: random.Random) -> Move:
    return rng.choices(list(moves), weights=[m.weight for m in moves])[0]
