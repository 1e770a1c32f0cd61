"""This machine's calibrated yardstick time: the reference that normalised runtimes are expressed in.

A normalised runtime is `raw x reference / yardstick-now` (evaluator.yardstick). For it to mean
the same thing in every evaluation -- this process or another, today or next week -- `reference`
must be one fixed figure per machine and core set: the median of CALIBRATION_RUNS yardstick runs,
measured by the keeper of the first evaluation that needs it (pinned like every candidate, the
candidate stopped) and cached. The key names everything the figure depends on (host, cores, torch,
the yardstick's code), so a changed set-up is calibrated afresh.
"""
from __future__ import annotations

import hashlib
import platform
import statistics
from pathlib import Path

import torch

from evaluator import json_cache, yardstick
from evaluator.sandbox import CandidateProcess

CACHE = "yardstick.json"
CALIBRATION_RUNS = 21


def fingerprint() -> str:
    """Which yardstick: a digest of its code (a changed workload makes old figures meaningless)."""
    return hashlib.sha256(Path(yardstick.__file__).read_bytes()).hexdigest()[:12]


def _key(cpus: tuple[int, ...]) -> str:
    return "|".join((platform.node(), ",".join(map(str, cpus)), torch.__version__, fingerprint()))


def reference_ms(proc: CandidateProcess, cpus: tuple[int, ...]) -> float:
    """The cached reference for `cpus`, calibrated now with `proc`'s keeper if there is none yet."""
    key = _key(cpus)
    cached = json_cache.load(CACHE).get(key)
    if isinstance(cached, (int, float)) and cached > 0:
        return float(cached)
    value = statistics.median(proc.yardstick_ms() for _ in range(CALIBRATION_RUNS))
    json_cache.update(CACHE, {key: value})
    return value
