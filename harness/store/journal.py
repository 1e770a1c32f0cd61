"""The append-only attempt journal (`journal.jsonl`): one JSON object per line.

Two kinds of line. A *call line* (`"kind": "call"`) is written the moment a model call returns,
before its answer is even parsed, so no completed call, nor what it cost, is lost to a Ctrl-C or
a crash that cuts its attempt short. An *outcome line* (no `kind`) is written once per attempt,
when it ends, and lists its calls again (`calls`; `finished_calls` on the line of an attempt that
was cut short), so each attempt reads whole on one line.

Totals count each call once (`spend`): an attempt's call lines when it has any, else the totals
on its outcome line (runs written before calls had lines of their own).

Why a plain JSON-lines file: it is cheap to append and fsync, read by people with `tail`/`jq` and
by the replay proposer, and a crash can damage at most its last line. `repair` drops such a torn
tail so every line on disk always parses.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.errors import UserError

CALL = "call"  # the `kind` of a call line

# fdatasync suffices for an append (it still flushes the new size) and costs half an fsync.
_sync = getattr(os, "fdatasync", os.fsync)


def append(path: Path, entry: dict[str, Any]) -> None:
    """Append one line and make it durable before returning (the caller counts it as done)."""
    line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = memoryview(line.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
        _sync(fd)
    finally:
        os.close(fd)


def _split(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Entries of the intact prefix, and its length in bytes (where a torn tail starts)."""
    entries: list[dict[str, Any]] = []
    good = 0
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        try:
            entry = json.loads(raw)
        except ValueError:
            break
        if not isinstance(entry, dict):
            break
        entries.append(entry)
        good += len(raw)
    return entries, good


def read(path: Path) -> list[dict[str, Any]]:
    """All intact entries; a torn last line (a writer killed mid-append) is skipped, not an error."""
    if not path.exists():
        return []
    return _split(path.read_bytes())[0]


def repair(path: Path) -> int:
    """Cut a torn last line off; returns how many bytes were dropped.

    Only the writer calls this (holding the run lock), before it appends again: a new line
    written after a torn one would otherwise be glued to it and lost too. Damage before the
    last line is not a crash's doing; it is reported, never cut.
    """
    if not path.exists():
        return 0
    data = path.read_bytes()
    entries, good = _split(data)
    if b"\n" in data[good:-1]:
        raise UserError(f"{path}:{len(entries) + 1}: damaged journal line before the end; "
                        f"fix or delete that line, then resume")
    if good < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(good)
            os.fsync(handle.fileno())
    return len(data) - good


def is_call(entry: Mapping[str, Any]) -> bool:
    return entry.get("kind") == CALL


def outcomes(entries: Iterable[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """The outcome line of each attempt, by attempt number (call lines left out)."""
    return {e["attempt"]: dict(e) for e in entries if not is_call(e) and isinstance(e.get("attempt"), int)}


@dataclass(frozen=True)
class Spend:
    """Tokens and dollars spent on model calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> Spend:
        """The totals a journal line (or a call record) states; missing ones count 0."""
        return cls(int(entry.get("prompt_tokens") or 0), int(entry.get("completion_tokens") or 0),
                   float(entry.get("cost") or 0.0))

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.cost + other.cost)


def calls_by_attempt(entries: Iterable[Mapping[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The call records of each attempt, from its call lines, in the order they were made (as an
    outcome line's `calls` lists them)."""
    calls: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        if is_call(entry) and isinstance(entry.get("attempt"), int):
            record = {k: v for k, v in entry.items() if k not in ("attempt", "kind", "timestamp")}
            calls.setdefault(entry["attempt"], []).append(record)
    return calls


def total(records: Iterable[Mapping[str, Any]]) -> Spend:
    return sum((Spend.of(r) for r in records), Spend())


def spend(entries: Iterable[Mapping[str, Any]],
          fallback: Mapping[int, Mapping[str, Any]] | None = None) -> dict[int, Spend]:
    """What each attempt spent, every call counted once: the sum of its call lines, or, for an attempt
    with none, the totals of its line in `fallback` (default: its outcome line in `entries`)."""
    entries = list(entries)
    lines = outcomes(entries) if fallback is None else fallback
    from_calls = {attempt: total(calls) for attempt, calls in calls_by_attempt(entries).items()}
    return {**{attempt: Spend.of(line) for attempt, line in lines.items()}, **from_calls}
