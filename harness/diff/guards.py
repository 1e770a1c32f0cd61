"""Guard rails a change must pass before it becomes a candidate worth evaluating.

Edits stay inside the `# EVOLVE-BLOCK-START` / `# EVOLVE-BLOCK-END` regions and keep the markers; the
result compiles, still defines `rebalance_experts` with the parent's parameter list, and does
something different from the parent. Each rule has its own message, because the message is what the
model reads when it retries. Pure functions; the only state is a small cache of facts about parents,
which are compiled again and again as many children are proposed from each.
"""
from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache
from types import CodeType

from harness.diff.errors import EngineError
from harness.diff.matching import quote

ENTRY_POINT = "rebalance_experts"
_MARKER = re.compile(r"\s*#\s*EVOLVE-BLOCK-(START|END)\b")
_MARKER_HINT = "EVOLVE-BLOCK-"  # cheap substring test before the regex


class GuardError(EngineError):
    """Markers that do not pair up, or a rewrite that changes code outside the regions; `reason` says where."""


@dataclass(frozen=True)
class Region:
    """An editable region: the lines strictly between its START and END marker lines (0-based indexes).
    A program without markers is one region from start=-1 to end=len(lines): everything is editable."""

    start: int
    end: int

    @property
    def marked(self) -> bool:
        return self.start >= 0


@dataclass(frozen=True)
class Problem:
    """A broken rule: the message for the model, and the result line it concerns when there is one."""

    message: str
    line: int | None = None  # 1-based


def is_marker(line: str) -> bool:
    return _MARKER_HINT in line and _MARKER.match(line) is not None


def find_regions(lines: Sequence[str]) -> tuple[Region, ...]:
    """The EVOLVE regions of a program, in order; GuardError when the markers do not pair up.
    Runs once per block, so marker lines are found with str.find over the joined text, not a loop."""
    text = "\n".join(lines)
    regions, opened = [], -1
    index, scanned, position = 0, 0, text.find(_MARKER_HINT)
    while position != -1:
        index += text.count("\n", scanned, position)
        scanned = position
        match = _MARKER.match(lines[index])
        if match is not None and match.group(1) == "START":
            if opened >= 0:
                raise GuardError(f"EVOLVE-BLOCK-START at line {index + 1} opens a block inside the one opened "
                                 f"at line {opened + 1}")
            opened = index
        elif match is not None:
            if opened < 0:
                raise GuardError(f"EVOLVE-BLOCK-END at line {index + 1} has no EVOLVE-BLOCK-START before it")
            regions.append(Region(opened, index))
            opened = -1
        line_end = text.find("\n", position)
        position = -1 if line_end == -1 else text.find(_MARKER_HINT, line_end)
    if opened >= 0:
        raise GuardError(f"EVOLVE-BLOCK-START at line {opened + 1} has no EVOLVE-BLOCK-END after it")
    return tuple(regions) or (Region(-1, len(lines)),)


def edit_problem(lines: Sequence[str], start: int, end: int, new: Sequence[str]) -> str | None:
    """Why replacing lines[start:end] with `new` would touch code outside the EVOLVE regions or a
    marker, or None. Lines a block only quotes as context (unchanged at either end) may lie outside:
    models often quote a marker line to anchor their SEARCH."""
    old = lines[start:end]
    same_head = _common_prefix(old, new)
    same_tail = _common_prefix(old[same_head:][::-1], new[same_head:][::-1])
    first, last = start + same_head, end - same_tail  # the old lines really replaced: [first, last)
    regions = find_regions(lines)
    if any(region.start < first and last <= region.end for region in regions):
        added = next((line for line in new[same_head:len(new) - same_tail] if is_marker(line)), None)
        return None if added is None else f"adds the EVOLVE marker line {quote(added)}; leave the markers as they are"
    where = f"inserts lines before line {first + 1}" if first == last else None
    for index in range(first, last):
        if is_marker(lines[index]):
            return f"changes line {index + 1} {quote(lines[index])}, an EVOLVE marker; leave the markers as they are"
        if not any(region.start < index < region.end for region in regions):
            where = f"changes line {index + 1} {quote(lines[index])}"
            break
    plural = "s" if len(regions) > 1 else ""
    spans = ", ".join(f"{region.start + 1}-{region.end + 1}" for region in regions)
    return f"{where}, outside the EVOLVE block{plural} (lines {spans}); edit only between the markers"


def splice_rewrite(parent: Sequence[str], rewrite: Sequence[str]) -> list[str]:
    """The parent with each EVOLVE region's content taken from a full rewrite. The code outside the
    regions must be the parent's (trailing whitespace and trailing blank lines aside); it is kept
    byte-for-byte from the parent. GuardError with the reason otherwise."""
    parent_regions = find_regions(parent)
    if not parent_regions[0].marked:
        return list(rewrite)
    try:
        regions = find_regions(rewrite)
    except GuardError as error:
        raise GuardError(f"the <CODE> rewrite: {error.reason}") from None
    if not regions[0].marked:
        raise GuardError("the <CODE> rewrite has no EVOLVE-BLOCK markers; keep the markers and the code outside them")
    if len(regions) != len(parent_regions):
        raise GuardError(f"the <CODE> rewrite has {len(regions)} EVOLVE blocks, the program has {len(parent_regions)}; "
                          "keep every marker and the code outside them")
    kept, proposed = _outside(parent, parent_regions), _outside(rewrite, regions)
    for number, ((p_start, p_end), (r_start, r_end)) in enumerate(zip(kept, proposed)):
        last = number == len(kept) - 1
        difference = _segment_difference(p_start, parent[p_start:p_end], rewrite[r_start:r_end], last)
        if difference:
            raise GuardError(f"the <CODE> rewrite {difference}, outside the EVOLVE blocks; keep that code unchanged")
    result = list(parent[:kept[0][1]])
    for region, segment in zip(regions, kept[1:]):
        result.extend(rewrite[region.start + 1:region.end])
        result.extend(parent[segment[0]:segment[1]])
    return result


def _outside(lines: Sequence[str], regions: Sequence[Region]) -> list[tuple[int, int]]:
    """[start, end) spans of the lines outside the regions, markers included: one more than regions."""
    bounds = [0] + [edge for region in regions for edge in (region.start + 1, region.end)] + [len(lines)]
    return list(zip(bounds[::2], bounds[1::2]))


def _segment_difference(parent_at: int, theirs: Sequence[str], mine: Sequence[str], last: bool) -> str | None:
    """How one stretch of code outside the regions differs between parent and rewrite, or None."""
    theirs, mine = [line.rstrip() for line in theirs], [line.rstrip() for line in mine]
    if last:
        theirs, mine = _without_trailing_blanks(theirs), _without_trailing_blanks(mine)
    for tag, i1, _i2, j1, _j2 in SequenceMatcher(None, theirs, mine, autojunk=False).get_opcodes():
        if tag == "replace":
            return f"changes program line {parent_at + i1 + 1} {quote(theirs[i1])} to {quote(mine[j1])}"
        if tag == "delete":
            return f"drops program line {parent_at + i1 + 1} {quote(theirs[i1])}"
        if tag == "insert":
            return f"adds {quote(mine[j1])} before program line {parent_at + i1 + 1}"
    return None


def _without_trailing_blanks(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def result_problem(parent: str, child: str) -> Problem | None:
    """The first rule the finished child breaks, or None: it must differ from the parent, compile,
    keep the parent's `rebalance_experts` parameter list, and not compile to the parent's code."""
    if child == parent:
        return Problem("result is identical to the parent; change the code inside the EVOLVE block")
    try:
        facts = _compile_facts(child)
    except SyntaxError as error:
        text = f" ({quote(error.text)})" if error.text and error.text.strip() else ""
        where = f"line {error.lineno}: " if error.lineno else ""
        return Problem(f"result does not parse: {where}{error.msg}{text}", error.lineno)
    except ValueError as error:  # e.g. a NUL byte in the source
        return Problem(f"result does not parse: {error}")
    before = _parent_facts(parent)
    if before is None:  # a parent that does not compile has no contract to keep
        return None
    if before.signature is not None and facts.signature != before.signature:
        if facts.signature is None:
            return Problem(f"result no longer defines a top-level function {ENTRY_POINT}{before.signature}; keep it")
        return Problem(f"{ENTRY_POINT} signature changed from {before.signature} to {facts.signature}; "
                       "keep the parameter list")
    if facts.code == before.code:
        return Problem("result compiles to the same code as the parent (only comments or formatting changed); "
                       "change what the program does")
    return None


@dataclass(frozen=True)
class _Facts:
    code: CodeType  # the compiled module with line numbers erased, to compare behaviour, not layout
    signature: str | None  # parameter list of the last top-level rebalance_experts, e.g. "(a, b, *, c)"


def _compile_facts(text: str) -> _Facts:
    """Compile (not just parse: it is faster than building an AST and also catches errors such as
    'return' outside a function). SyntaxWarnings are silenced: they are not the model's failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = compile(text, "<program>", "exec", dont_inherit=True)
    functions = [const for const in module.co_consts if isinstance(const, CodeType)
                 and const.co_name == ENTRY_POINT and const.co_flags & inspect.CO_OPTIMIZED]
    return _Facts(_erase_lines(module), _signature(functions[-1]) if functions else None)


@lru_cache(maxsize=16)
def _parent_facts(text: str) -> _Facts | None:
    try:
        return _compile_facts(text)
    except (SyntaxError, ValueError):
        return None


def _erase_lines(code: CodeType) -> CodeType:
    consts = tuple(_erase_lines(const) if isinstance(const, CodeType) else const for const in code.co_consts)
    return code.replace(co_firstlineno=1, co_linetable=b"", co_consts=consts)


def _signature(code: CodeType) -> str:
    """Parameter names and kinds (defaults and annotations are free to change)."""
    names = code.co_varnames
    positional = list(names[:code.co_argcount])
    if code.co_posonlyargcount:
        positional.insert(code.co_posonlyargcount, "/")
    index = code.co_argcount + code.co_kwonlyargcount
    keyword_only = list(names[code.co_argcount:index])
    star = []
    if code.co_flags & inspect.CO_VARARGS:
        star, index = ["*" + names[index]], index + 1
    elif keyword_only:
        star = ["*"]
    double_star = ["**" + names[index]] if code.co_flags & inspect.CO_VARKEYWORDS else []
    return "(" + ", ".join(positional + star + keyword_only + double_star) + ")"
