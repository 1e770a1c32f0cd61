"""LLM response text -> `Response`: name, description, and either SEARCH/REPLACE edits or a full rewrite.

Pure text processing. Models wrap their answers in markdown fences, send CRLF line endings, leave
spaces after marker lines, split one diff over several `<DIFF>` sections, forget the closing
`</DIFF>` of an otherwise complete reply or the `<DIFF>` tags altogether; all of that is accepted,
because blocks are found by their marker lines wherever they are, so no block is ever dropped for
sitting outside a tag. A byte-order mark is dropped, and so is reasoning (`reasoning.py`): only
the answer is read, never the drafts a model thought through and rejected.

What is not accepted is anything whose meaning is unclear (a SEARCH without its divider, a block
without its REPLACE marker, two dividers in one block, a diff beside a rewrite): that raises
`ResponseError` whose `reason` names the block and the response line, because the reason is shown
verbatim to the model in the retry prompt.

A `<CODE>` section is a rewrite only when it holds a program, which we take to be at least
MIN_PROGRAM_LINES non-blank lines: the smallest program a rewrite may be (both EVOLVE markers and
the `def rebalance_experts` line) has three, while prose that merely mentions the format ("rather
than a full rewrite in <CODE>...</CODE>, here is a diff") holds a line or two. Whether it parses is
left to the patch engine, whose error names the line (a rewrite cut off at max_tokens still counts
as one, so the model hears what is wrong with it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from harness.diff.errors import ResponseError
from harness.diff.reasoning import blank_reasoning

DEFAULT_NAME = "unnamed"
MIN_PROGRAM_LINES = 3  # see the module docstring
BYTE_ORDER_MARK = "\ufeff"

_TAG = re.compile(r"<(/?)(NAME|DESCRIPTION|DIFF|CODE)>", re.IGNORECASE)
_SEARCH = re.compile(r"<{7}\s*SEARCH")
_DIVIDER = re.compile(r"={7}")
_REPLACE = re.compile(r">{7}\s*REPLACE")
_FENCE = re.compile(r"```[\w+-]*")


@dataclass(frozen=True)
class EditBlock:
    """One SEARCH/REPLACE block. Texts hold whole lines, each ending in '\\n' ('' is zero lines), so
    that deleting lines (empty REPLACE) and replacing them with one blank line stay distinct."""

    search: str
    replace: str
    line: int  # 1-based line of the block's SEARCH marker in the response, for the journal


@dataclass(frozen=True)
class Response:
    """A parsed reply: exactly one of `edits` (non-empty) or `code` (a full rewrite) carries the change.

    `name` is DEFAULT_NAME ("unnamed") when the reply has no usable <NAME>; `description` is '' when
    it has no <DESCRIPTION>.
    """

    name: str
    description: str
    edits: tuple[EditBlock, ...]
    code: str | None


@dataclass(frozen=True)
class _Section:
    text: str
    closed: bool


class _Marker(Enum):
    SEARCH = "search"
    DIVIDER = "divider"
    REPLACE = "replace"


def parse_response(text: str) -> Response:
    """Parse a model reply; raise ResponseError when it holds no usable change or a malformed block."""
    text = blank_reasoning(text.removeprefix(BYTE_ORDER_MARK).replace("\r\n", "\n").replace("\r", "\n"))
    name_section, description_section = _pick(_sections(text, "NAME")), _pick(_sections(text, "DESCRIPTION"))
    name = " ".join(name_section.text.split()) if name_section else ""
    description = description_section.text.strip() if description_section else ""
    edits = _scan_blocks(text)
    code_sections = _sections(text, "CODE")
    if edits:
        if any(section.closed and _is_program(section) for section in code_sections):
            raise ResponseError("the response has both SEARCH/REPLACE blocks and a <CODE> rewrite; "
                                "send only one of them")
        return Response(name or DEFAULT_NAME, description, edits, None)
    return Response(name or DEFAULT_NAME, description, (), _rewrite(code_sections))


def _rewrite(code_sections: list[_Section]) -> str:
    """The program of a reply without SEARCH/REPLACE blocks; ResponseError unless one <CODE> section holds one."""
    programs = [section for section in code_sections if _is_program(section)]
    closed = sum(section.closed for section in programs)
    if closed > 1:
        raise ResponseError(f"the response has {closed} <CODE> sections; send one full program")
    program = _pick(programs)
    if program is None and code_sections:
        raise ResponseError(f"<CODE> holds no program (fewer than {MIN_PROGRAM_LINES} lines); put the complete "
                            "program between <CODE> and </CODE>, or send SEARCH/REPLACE blocks inside <DIFF>...</DIFF>")
    if program is None:
        raise ResponseError("no change found: send SEARCH/REPLACE blocks inside <DIFF>...</DIFF> ('<<<<<<< SEARCH', "
                            "'=======', '>>>>>>> REPLACE') or a full program inside <CODE>...</CODE>")
    return _code(program) + "\n"


def _sections(text: str, tag: str) -> list[_Section]:
    """Every <tag> section in order. A section ends at its closing tag; an unclosed one (a reply cut
    before '</tag>', or a tag merely mentioned in prose) runs to the next tag of any kind or the end."""
    tags = list(_TAG.finditer(text))
    sections = []
    for i, match in enumerate(tags):
        if match.group(1) or match.group(2).upper() != tag:
            continue
        following = tags[i + 1] if i + 1 < len(tags) else None
        closed = following is not None and following.group(1) == "/" and following.group(2).upper() == tag
        end = following.start() if following is not None else len(text)
        sections.append(_Section(text[match.end():end], closed))
    return sections


def _pick(sections: list[_Section]) -> _Section | None:
    """The first closed section; failing that the last unclosed one (prose mentions come first)."""
    closed = [section for section in sections if section.closed]
    return closed[0] if closed else (sections[-1] if sections else None)


def _code(section: _Section) -> str:
    """A <CODE> section's program: fences unwrapped, blank lines around it dropped."""
    return "\n".join(_strip_fences(section.text.split("\n"))).strip("\n")


def _is_program(section: _Section) -> bool:
    return sum(1 for line in _code(section).split("\n") if line.strip()) >= MIN_PROGRAM_LINES


def _marker(line: str) -> _Marker | None:
    stripped = line.strip()
    if _SEARCH.fullmatch(stripped):
        return _Marker.SEARCH
    if _DIVIDER.fullmatch(stripped):
        return _Marker.DIVIDER
    if _REPLACE.fullmatch(stripped):
        return _Marker.REPLACE
    return None


def _scan_blocks(text: str) -> tuple[EditBlock, ...]:
    """Read every block of the reply. Lines outside blocks (prose, tags, fences) are skipped, and so is a
    lone '=======' there (a markdown heading underline); any other marker out of place is an error
    naming the block and the response line."""
    blocks: list[EditBlock] = []
    search_at = divider_at = 0  # response line of the open block's SEARCH marker / divider (0: none)
    body: list[str] = []
    search: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        marker = _marker(line)
        block = f"block {len(blocks) + 1}"
        if marker is None or (marker is _Marker.DIVIDER and not search_at):
            if search_at:
                body.append(line)
        elif marker is _Marker.SEARCH:
            if divider_at:
                raise ResponseError(f"{block}: no '>>>>>>> REPLACE' marker between the divider at line "
                                    f"{divider_at} and the next SEARCH marker at line {number}")
            if search_at:
                raise ResponseError(f"{block}: SEARCH marker at line {search_at} has no '=======' divider "
                                    f"before the next SEARCH marker at line {number}")
            search_at, body = number, []
        elif marker is _Marker.DIVIDER:
            if divider_at:
                raise ResponseError(f"{block} has two '=======' dividers (lines {divider_at} and {number}); "
                                    "a line holding only '=======' cannot appear inside SEARCH or REPLACE")
            divider_at, search, body = number, body, []
        else:
            if not search_at:
                raise ResponseError(f"line {number}: '>>>>>>> REPLACE' marker with no '<<<<<<< SEARCH' "
                                    "marker before it")
            if not divider_at:
                raise ResponseError(f"{block}: SEARCH marker at line {search_at} reaches the REPLACE marker at "
                                    f"line {number} with no '=======' divider")
            blocks.append(EditBlock(_joined(search), _joined(body), search_at))
            search_at = divider_at = 0
    if search_at:
        missing = f"'>>>>>>> REPLACE' marker after the divider at line {divider_at}" if divider_at else \
            f"'=======' divider after the SEARCH marker at line {search_at}"
        raise ResponseError(f"block {len(blocks) + 1}: no {missing} before the reply ends; "
                            "the response looks truncated")
    return tuple(blocks)


def _strip_fences(lines: list[str]) -> list[str]:
    """Drop a markdown fence pair wrapped around a block's text or a <CODE> program (a lone fence line
    is kept: it could be real content)."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if len(filled) >= 2 and _FENCE.fullmatch(lines[filled[0]].strip()) and lines[filled[-1]].strip() == "```":
        return lines[filled[0] + 1:filled[-1]]
    return lines


def _joined(lines: list[str]) -> str:
    return "".join(line + "\n" for line in _strip_fences(lines))
