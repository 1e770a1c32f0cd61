"""The seed's per-scenario runtime, measured once per machine and cached, for `speedup_vs_seed`.

Timing the seed costs tens of seconds on the default suite; re-timing it for every candidate would
break the "a 5 ms candidate evaluates in 5 s" budget. The cache key names everything the figure
depends on (machine, device, threads, torch, the seed's source, the scenario's windows), so a stale
figure is never reused for a different set-up.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import torch

from evaluator.evaluate import EvalOptions, evaluate
from evaluator.scenarios import Scenario
from seed_program import SEED_PATH


def cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "eplb-evolve" / "seed-runtimes.json"


def _windows_digest(scenario: Scenario, heldout: bool) -> str:
    windows = scenario.heldout_windows() if heldout else scenario.search_windows()
    return hashlib.sha256(windows.contiguous().numpy().tobytes()).hexdigest()[:16]


def _key(scenario: Scenario, options: EvalOptions) -> str:
    seed_digest = hashlib.sha256(SEED_PATH.read_bytes()).hexdigest()[:16]
    parts = (platform.node(), options.device, str(options.limits.threads), torch.__version__,
             seed_digest, scenario.name, str(options.heldout), _windows_digest(scenario, options.heldout))
    return "|".join(parts)


def _load() -> dict[str, float]:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _store(cache: dict[str, float]) -> None:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    tmp.replace(path)


def remember(scenarios: list[Scenario], options: EvalOptions, runtimes_ms: dict[str, float]) -> None:
    """Record the seed's runtimes (from an evaluation of the seed itself)."""
    cache = _load()
    cache.update({_key(s, options): runtimes_ms[s.name] for s in scenarios if s.name in runtimes_ms})
    _store(cache)


def seed_runtimes(scenarios: list[Scenario], suite: str, options: EvalOptions) -> dict[str, float] | None:
    """Per-scenario seed runtime in ms, timing the seed now for scenarios not yet cached.

    Returns None when the seed itself fails to evaluate (then no speedup can be given).
    """
    options = replace(options, seed_runtime_ms=None)
    cache = _load()
    missing = [s for s in scenarios if _key(s, options) not in cache]
    if missing:
        print(f"timing the seed once on {len(missing)} scenario(s) for speedup_vs_seed "
              f"(cached in {cache_path()})", file=sys.stderr)
        result = evaluate(SEED_PATH, missing, suite, options)
        if not result.valid:
            return None
        remember(missing, options, {r.name: r.runtime_ms for r in result.scenarios})
        cache = _load()
    return {s.name: cache[_key(s, options)] for s in scenarios if _key(s, options) in cache} or None
