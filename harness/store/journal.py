"""The append-only attempt journal (`journal.jsonl`): one JSON object per line, one line per attempt.

Why a plain JSON-lines file: it is written once per attempt (cheap to append and fsync), read
by people with `tail`/`jq` and by the replay proposer, and a crash can damage at most its last
line. `repair` drops such a torn tail so every line on disk always parses.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evaluator.errors import UserError

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
