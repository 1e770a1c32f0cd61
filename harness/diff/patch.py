"""Program text + parsed response -> the child program, with one outcome per block.

All or nothing: if any block fails, nothing is applied, yet every block is still tried (later ones
against the text without the failed one) so that the journal and the retry prompt say what happened
to each. Blocks apply in order, each to the program as the blocks before it left it; the line
numbers in outcomes and messages refer to that text. Peers skip a block that does not apply and
evaluate the parent again as if it were new; here every failure is a result with a reason.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from harness.diff.errors import ProgramError
from harness.diff.guards import GuardError, edit_problem, find_regions, result_problem, splice_rewrite
from harness.diff.matching import MatchError, locate
from harness.diff.response import Response

Status = Literal["exact", "tolerant", "failed"]


@dataclass(frozen=True)
class BlockOutcome:
    """What happened to one block. `index` is 1-based, as in messages ("block 2")."""

    index: int
    status: Status
    detail: str  # exact: ""; tolerant: what was forgiven ("indentation +4 spaces"); failed: the reason
    start_line: int | None  # 1-based first line the block matched, None when it matched nowhere

    def render(self) -> str:
        where = f" at line {self.start_line}" if self.start_line is not None else ""
        if self.status == "failed":
            return f"block {self.index} failed{where}: {self.detail}"
        if self.status == "tolerant":
            return f"block {self.index}: tolerant ({self.detail}){where}"
        return f"block {self.index}: exact{where}"


@dataclass(frozen=True)
class PatchResult:
    """The child text when `ok`; otherwise `error` says why (block failures, one per line)."""

    ok: bool
    text: str | None
    outcomes: tuple[BlockOutcome, ...]
    error: str | None
    rewrite: bool = False  # the response was a full <CODE> rewrite (no blocks, no outcomes)

    def summary(self) -> str:
        """A compact report for the journal and the retry prompt: a headline, then one line per block."""
        failed = sum(outcome.status == "failed" for outcome in self.outcomes)
        if self.ok:
            counts = {status: sum(o.status == status for o in self.outcomes) for status in ("exact", "tolerant")}
            kinds = [f"{count} {status}" for status, count in counts.items() if count]
            headline = "applied: full rewrite (<CODE>)" if self.rewrite else \
                f"applied {len(self.outcomes)} block(s): {', '.join(kinds)}"
        elif failed:
            headline = f"not applied: {failed} of {len(self.outcomes)} block(s) failed"
        else:
            headline = f"not applied: {self.error}"
        return "\n".join([headline, *(outcome.render() for outcome in self.outcomes)])

    def to_dict(self) -> dict[str, Any]:
        """Everything but the text, for the journal and --json."""
        return {"ok": self.ok, "error": self.error, "rewrite": self.rewrite,
                "outcomes": [asdict(outcome) for outcome in self.outcomes]}


def apply_edits(program: str, response: Response) -> PatchResult:
    """Apply a response to a program. ProgramError when the program's own EVOLVE markers are broken."""
    program = program.replace("\r\n", "\n").replace("\r", "\n")
    lines, final_newline = _split(program)
    try:
        find_regions(lines)
    except GuardError as error:
        raise ProgramError(f"program: {error.reason}; fix the markers in the program file") from None
    if response.code is not None:
        return _apply_rewrite(program, lines, final_newline, response.code)
    outcomes: list[BlockOutcome] = []
    written: list[tuple[int, int, int]] = []  # (block index, start, end) of lines each block wrote, current coordinates
    for index, edit in enumerate(response.edits, 1):
        try:
            match = locate(lines, _split_block(edit.search), _split_block(edit.replace))
        except MatchError as error:
            outcomes.append(BlockOutcome(index, "failed", error.reason, None))
            continue
        trespass = edit_problem(lines, match.start, match.end, match.replace)
        if trespass is not None:
            outcomes.append(BlockOutcome(index, "failed", trespass, match.start + 1))
            continue
        lines[match.start:match.end] = match.replace
        written = _track(written, index, match.start, match.end, len(match.replace))
        status: Status = "exact" if match.tolerance is None else "tolerant"
        outcomes.append(BlockOutcome(index, status, match.tolerance or "", match.start + 1))
    failures = [outcome.render() for outcome in outcomes if outcome.status == "failed"]
    if failures:
        return PatchResult(False, None, tuple(outcomes), "\n".join(failures))
    text = _join(lines, final_newline)
    problem = result_problem(program, text)
    if problem is not None:
        owner = next((index for index, start, end in reversed(written)
                      if problem.line is not None and start < problem.line <= end), None)
        blame = f" (line {problem.line} was written by block {owner})" if owner is not None else ""
        return PatchResult(False, None, tuple(outcomes), problem.message + blame)
    return PatchResult(True, text, tuple(outcomes), None)


def _apply_rewrite(program: str, lines: list[str], final_newline: bool, code: str) -> PatchResult:
    try:
        text = _join(splice_rewrite(lines, _split(code)[0]), final_newline)
    except GuardError as error:
        return PatchResult(False, None, (), error.reason, rewrite=True)
    problem = result_problem(program, text)
    if problem is not None:
        return PatchResult(False, None, (), problem.message, rewrite=True)
    return PatchResult(True, text, (), None, rewrite=True)


def _track(written: list[tuple[int, int, int]], index: int, start: int, end: int,
           size: int) -> list[tuple[int, int, int]]:
    """Move the spans earlier blocks wrote to where they sit after lines [start, end) became `size` lines.
    A span the new block overlaps grows to cover it (attribution is then approximate, the later block wins)."""
    delta = size - (end - start)
    moved = []
    for owner, first, last in written:
        if first >= end:
            first, last = first + delta, last + delta
        elif last > start:
            first, last = min(first, start), max(last, end) + delta
        moved.append((owner, first, last))
    return moved + [(index, start, start + size)]


def _split(text: str) -> tuple[list[str], bool]:
    """Lines of a text, and whether it ended with a newline (kept so an unchanged end stays unchanged)."""
    if text.endswith("\n"):
        return text[:-1].split("\n"), True
    return text.split("\n"), False


def _split_block(text: str) -> list[str]:
    return text[:-1].split("\n") if text else []


def _join(lines: list[str], final_newline: bool) -> str:
    return "\n".join(lines) + ("\n" if final_newline else "")
