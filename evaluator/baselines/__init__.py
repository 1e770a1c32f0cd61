"""Reference EPLB programs used as anchors by `compare --baselines` and `report`.

Each module is a standalone program (the sandbox loads it by path, like a candidate), so they share
no code with each other or with the evaluator.
"""
from __future__ import annotations

from pathlib import Path

BASELINES_DIR = Path(__file__).parent


def baseline_paths() -> list[Path]:
    """The reference programs shipped here (every module but the package's own)."""
    return sorted(p for p in BASELINES_DIR.glob("*.py") if p.name != "__init__.py")


def baseline_label(path: Path) -> str:
    return f"{path.stem} (baseline)"
