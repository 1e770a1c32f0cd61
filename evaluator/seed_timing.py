"""The seed's per-scenario runtime, measured once per machine and cached, for `speedup_vs_seed`.

Timing the seed costs tens of seconds on the default suite; re-timing it for every candidate would
break the "a 5 ms candidate evaluates in 5 s" budget. The cache key names everything the figure
depends on (machine, device, threads, torch, the seed's source, the scenario's windows, the timing
mode), so a stale figure is never reused for a different set-up.
"""
from __future__ import annotations

import hashlib
import platform
import sys
from dataclasses import replace
from pathlib import Path

import torch

from evaluator.evaluate import EvalOptions, evaluate
from evaluator.timing import json_cache, timing_reference
from evaluator.workloads.scenarios import Scenario
from seed_program import SEED_PATH

CACHE = "seed-runtimes.json"


def cache_path() -> Path:
    return json_cache.cache_path(CACHE)


def _key(scenario: Scenario, options: EvalOptions) -> str:
    seed_digest = hashlib.sha256(SEED_PATH.read_bytes()).hexdigest()[:16]
    # Normalised figures are in units of the machine's reference: a recalibrated one re-times the seed.
    timing = (f"yardstick {timing_reference.fingerprint()} {timing_reference.cached_reference_ms()!r}"
              if options.normalise_timing else "wall clock")
    parts = (platform.node(), options.device, str(options.limits.threads), torch.__version__,
             seed_digest, scenario.name, str(options.heldout), scenario.windows_digest(options.heldout), timing)
    return "|".join(parts)


def remember(scenarios: list[Scenario], options: EvalOptions, runtimes_ms: dict[str, float]) -> None:
    """Record the seed's runtimes (from an evaluation of the seed itself)."""
    json_cache.update(CACHE, {_key(s, options): runtimes_ms[s.name] for s in scenarios if s.name in runtimes_ms})


def seed_runtimes(scenarios: list[Scenario], suite: str, options: EvalOptions) -> dict[str, float] | None:
    """Per-scenario seed runtime in ms, timing the seed now for scenarios not yet cached.

    Returns None when the seed itself fails to evaluate (then no speedup can be given).
    """
    options = replace(options, seed_runtime_ms=None, fresh_check=False)  # the seed is trusted
    cache = json_cache.load(CACHE)
    missing = [s for s in scenarios if _key(s, options) not in cache]
    if missing:
        print(f"timing the seed once on {len(missing)} scenario(s) for speedup_vs_seed "
              f"(cached in {cache_path()})", file=sys.stderr)
        result = evaluate(SEED_PATH, missing, suite, options)
        if not result.valid:
            return None
        remember(missing, options, {r.name: r.runtime_ms for r in result.scenarios})
        cache = json_cache.load(CACHE)
    return {s.name: cache[_key(s, options)] for s in scenarios if _key(s, options) in cache} or None
