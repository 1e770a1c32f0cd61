"""Find the one place a SEARCH text refers to in a program, or explain precisely why there is none.

Layers, strictest first: exact; equal but for trailing whitespace; equal but for blank lines; equal
but for a uniform indentation shift (the REPLACE is then re-indented by the same shift). The first
layer that matches anything decides, and it must match exactly one place: guessing between two
places would silently edit the wrong code. On a miss the error quotes the nearest region of the
program and its first differing line, so the model can copy the right text in its retry.
"""
from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from harness.diff.errors import EngineError

_MAX_LISTED = 8  # line numbers quoted for an ambiguous SEARCH
_WORD = re.compile(r"\w+")
_QUOTE_CURRENT = "SEARCH must quote the current program, not an older or imagined version"
_RESEMBLES = 0.5  # below this similarity, pointing at a "first difference" would only mislead
_NEAREST_CANDIDATES = 3  # windows scored with difflib on a miss; keeps the miss path linear in program size


@dataclass(frozen=True)
class Match:
    """Replace program lines [start, end) (0-based) with `replace`."""

    start: int
    end: int
    replace: tuple[str, ...]
    tolerance: str | None  # None for an exact match, else what was forgiven, e.g. "indentation +4 spaces"


class MatchError(EngineError):
    """No unique place for a SEARCH; `reason` is one line for the model (the caller names the block)."""


@dataclass(frozen=True)
class _Layer:
    name: str  # what the layer forgives, as shown to the model
    key: Callable[[str], str]  # lines are compared by this key
    skip_blank: bool  # compare only non-blank lines
    shift: bool  # accept a uniform indentation shift and re-indent REPLACE by it


_TOLERANT_LAYERS = (
    _Layer("trailing whitespace", str.rstrip, skip_blank=False, shift=False),
    _Layer("blank lines", str.rstrip, skip_blank=True, shift=False),
    _Layer("indentation", str.strip, skip_blank=True, shift=True),
)


def locate(program: Sequence[str], search: Sequence[str], replace: Sequence[str]) -> Match:
    """Where `search` (lines) sits in `program` (lines), with `replace` adapted to that place."""
    if not any(line.strip() for line in search):
        raise MatchError("SEARCH is empty; quote the exact program lines to change (to insert code, quote the "
                         "line before the insertion point and repeat it at the start of REPLACE)")
    starts = _occurrences(program, search)
    if len(starts) == 1:
        return Match(starts[0], starts[0] + len(search), tuple(replace), None)
    if starts:
        raise MatchError(f"SEARCH matches {_places(starts)}; add neighbouring lines to SEARCH so it matches one place")
    for layer in _TOLERANT_LAYERS:
        matches = _layer_matches(layer, program, search, replace)
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise MatchError(f"SEARCH is not in the program as written, and matches "
                             f"{_places([m.start for m in matches])} when ignoring {layer.name}; copy the lines "
                             "exactly, with enough neighbours to match one place")
    raise MatchError(f"SEARCH not found; {_nearest(program, search)}")


def _occurrences(haystack: Sequence[str], needle: Sequence[str]) -> list[int]:
    """Every start index (overlaps included) of `needle` as consecutive lines of `haystack`.
    Done with one str.find per hit over the joined text: a C-speed scan instead of a Python loop."""
    text = "\n" + "\n".join(haystack) + "\n"
    target = "\n" + "\n".join(needle) + "\n"
    starts, line, counted = [], 0, 0
    position = text.find(target)
    while position != -1:
        line += text.count("\n", counted, position)
        counted = position
        starts.append(line)
        position = text.find(target, position + 1)
    return starts


def _layer_matches(layer: _Layer, program: Sequence[str], search: Sequence[str], replace: Sequence[str]) -> list[Match]:
    if not layer.skip_blank:
        keys = [layer.key(line) for line in program]
        return [Match(s, s + len(search), tuple(replace), layer.name)
                for s in _occurrences(keys, [layer.key(line) for line in search])]
    rows = [i for i, line in enumerate(program) if line.strip()]
    wanted = [line for line in search if line.strip()]
    trimmed = _trim_blank_edges(search, replace)
    matches = []
    for k in _occurrences([layer.key(program[i]) for i in rows], [layer.key(line) for line in wanted]):
        start, end = rows[k], rows[k + len(wanted) - 1] + 1
        if not layer.shift:
            matches.append(Match(start, end, trimmed, layer.name))
            continue
        shift = _uniform_shift([program[i] for i in rows[k:k + len(wanted)]], wanted)
        if shift is not None:
            matches.append(Match(start, end, _reindent(trimmed, shift, start), f"indentation {_describe(shift)}"))
    return matches


def _trim_blank_edges(search: Sequence[str], replace: Sequence[str]) -> tuple[str, ...]:
    """A match that ignores blank lines spans only SEARCH's non-blank lines, so drop as many leading and
    trailing blank lines from REPLACE as SEARCH had; otherwise each retry would pile up blank lines."""
    lead = _blank_run(search)
    trail = _blank_run(search[::-1])
    lines = list(replace)
    del lines[:min(lead, _blank_run(lines))]
    cut = min(trail, _blank_run(lines[::-1]))
    return tuple(lines[:len(lines) - cut])


def _blank_run(lines: Sequence[str]) -> int:
    count = 0
    while count < len(lines) and not lines[count].strip():
        count += 1
    return count


def _indent(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def _uniform_shift(found: Sequence[str], wanted: Sequence[str]) -> tuple[str, str] | None:
    """('+', X) when every program line is X + the SEARCH line's indentation, ('-', X) when every SEARCH
    line has X more than the program; None when the shift is not one and the same for all lines."""
    shifts = set()
    for have, want in zip(found, wanted):
        have_indent, want_indent = _indent(have), _indent(want)
        if have_indent.endswith(want_indent):
            shifts.add(("+", have_indent[:len(have_indent) - len(want_indent)]))
        elif want_indent.endswith(have_indent):
            shifts.add(("-", want_indent[:len(want_indent) - len(have_indent)]))
        else:
            return None
    return shifts.pop() if len(shifts) == 1 else None  # never a zero shift: the blank-lines layer took those


def _reindent(lines: Sequence[str], shift: tuple[str, str], at: int) -> tuple[str, ...]:
    sign, step = shift
    if sign == "+":
        return tuple(step + line if line.strip() else line for line in lines)
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.startswith(step):
            raise MatchError(f"SEARCH matches line {at + 1} once indented {_describe(shift)}, but REPLACE line "
                             f"{number} {quote(line)} is indented less than that; send the block with the "
                             "program's indentation")
    return tuple(line[len(step):] if line.strip() else line for line in lines)


def _describe(shift: tuple[str, str]) -> str:
    sign, step = shift
    if step == " " * len(step):
        return f"{sign}{len(step)} spaces"
    if step == "\t" * len(step):
        return f"{sign}{len(step)} tabs"
    return f"{sign}{step!r}"


def _places(starts: Sequence[int]) -> str:
    listed = ", ".join(str(s + 1) for s in starts[:_MAX_LISTED])
    more = ", ..." if len(starts) > _MAX_LISTED else ""
    return f"{len(starts)} places (lines {listed}{more})"


def quote(line: str) -> str:
    """A program line as messages show it: indentation kept (it is often the point), at most 80 chars."""
    line = line.rstrip()
    return repr(line if len(line) <= 80 else line[:77] + "...")


def _nearest(program: Sequence[str], search: Sequence[str]) -> str:
    """Describe the program region most like SEARCH. Windows of SEARCH's length are first ranked in one
    linear pass by how many of SEARCH's words (identifiers, numbers) they share, so a region where every
    line has a typo, or a stale copy of the code, is still found; only the best few are then aligned
    line by line with difflib, which keeps a miss cheap on long programs."""
    size = min(len(search), len(program))
    needed = Counter(word for line in search for word in _WORD.findall(line))
    best = _best_windows([[word for word in _WORD.findall(line) if word in needed] for line in program], needed, size)
    if not best:
        return f"no program region shares a word with it; {_QUOTE_CURRENT}"
    wanted = [line.rstrip() for line in search]
    ranked = []
    for start in best:
        window = [line.rstrip() for line in program[start:start + size]]
        matcher = SequenceMatcher(None, wanted, window, autojunk=False)
        ranked.append((_similarity(matcher, wanted, window), -start, matcher))
    similarity, negated_start, matcher = max(ranked, key=lambda entry: entry[:2])  # ties: the earliest region
    start = -negated_start
    shown = math.floor(similarity * 100) / 100  # rounded down: a region that differs never reads 1.00
    if similarity < _RESEMBLES:
        return (f"no program region resembles it (the closest, lines {start + 1}-{start + size}, has similarity "
                f"{shown:.2f}); {_QUOTE_CURRENT}")
    return (f"nearest program region: lines {start + 1}-{start + size} (similarity {shown:.2f}); "
            f"first difference: {_first_difference(matcher, search, program, start)}; "
            "copy the SEARCH lines exactly from the current program")


def _best_windows(features: Sequence[Sequence[str]], needed: Counter[str], size: int) -> list[int]:
    """Start lines of the few windows of `size` lines whose features cover most of `needed` (a
    multiset), ties to the earliest; [] when no window covers anything. Sliding, so linear."""
    if size == 0:
        return []
    have: Counter[str] = Counter()
    covered, scores = 0, []
    for i, entering in enumerate(features):
        for feature in entering:
            covered += have[feature] < needed[feature]
            have[feature] += 1
        if i >= size:
            for feature in features[i - size]:
                have[feature] -= 1
                covered -= have[feature] < needed[feature]
        if i >= size - 1:
            scores.append(covered)
    best = heapq.nlargest(_NEAREST_CANDIDATES, range(len(scores)), key=scores.__getitem__)
    return best if scores[best[0]] else []


def _similarity(matcher: SequenceMatcher, wanted: Sequence[str], window: Sequence[str]) -> float:
    """difflib's ratio over lines, except that a changed line still earns the share of its characters
    that match: a one-line SEARCH with a typo is then 0.9 similar, not 0."""
    credit = 0.0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            credit += i2 - i1
        elif tag == "replace":
            pairs = zip(wanted[i1:i2], window[j1:j2])
            credit += sum(SequenceMatcher(None, mine, theirs).ratio() for mine, theirs in pairs)
    return 2 * credit / (len(wanted) + len(window))


def _first_difference(matcher: SequenceMatcher, search: Sequence[str], program: Sequence[str], start: int) -> str:
    for tag, i1, _i2, j1, _j2 in matcher.get_opcodes():
        if tag == "replace":
            mine, theirs = search[i1], program[start + j1]
            note = " (only the indentation differs)" if mine.strip() == theirs.strip() else ""
            return f"SEARCH line {i1 + 1} {quote(mine)} vs program line {start + j1 + 1} {quote(theirs)}{note}"
        if tag == "delete":
            return f"SEARCH line {i1 + 1} {quote(search[i1])} is not in the program there"
        if tag == "insert":
            return f"program line {start + j1 + 1} {quote(program[start + j1])} is missing from SEARCH"
    return "SEARCH runs past the end of the program"
