"""Small JSON caches under ~/.cache/eplb-evolve (or $XDG_CACHE_HOME): figures measured once per machine.

Read-merge-write with a private temporary file and an atomic rename, so concurrent evaluations
(worker processes, or two runs on one machine) never leave a torn file; the last writer of a key
wins, and every writer measures the same thing. A missing or unreadable file is an empty cache.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def cache_path(name: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "eplb-evolve" / name


def load(name: str) -> dict[str, Any]:
    try:
        data = json.loads(cache_path(name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update(name: str, entries: dict[str, Any]) -> None:
    path = cache_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**load(name), **entries}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=1, sort_keys=True))
    tmp.replace(path)
