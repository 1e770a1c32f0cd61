"""This machine's calibrated yardstick time: the reference that normalised runtimes are expressed in.

A normalised runtime is `raw x reference / yardstick-now` (evaluator.yardstick). For it to mean
the same thing in every evaluation -- this process or another, today or next week -- `reference`
must be one fixed figure per machine and core set. It is calibrated by the first evaluation that
needs it, as the median of all the yardstick times taken beside its calls (topped up to
MIN_SAMPLES runs if it made fewer), and cached. Taken over a whole evaluation rather than a burst
of back-to-back runs, it spans the host's fast and slow stretches, so normalised runtimes stay
close to this machine's typical milliseconds. The key names everything the figure depends on
(host, cores, torch, the yardstick's code), so a changed set-up is calibrated afresh.
"""
from __future__ import annotations

import hashlib
import platform
import statistics
from pathlib import Path
from typing import Callable

import torch

from evaluator import json_cache, yardstick

CACHE = "yardstick.json"
MIN_SAMPLES = 21


def fingerprint() -> str:
    """Which yardstick: a digest of its code (a changed workload makes old figures meaningless)."""
    return hashlib.sha256(Path(yardstick.__file__).read_bytes()).hexdigest()[:12]


def _key(cpus: tuple[int, ...]) -> str:
    return "|".join((platform.node(), ",".join(map(str, cpus)), torch.__version__, fingerprint()))


def reference_ms(cpus: tuple[int, ...], samples: list[float], more: Callable[[], float]) -> float:
    """The cached reference for `cpus`; without one, the median of `samples` (yardstick times of the
    evaluation asking, in ms) and, if there are fewer than MIN_SAMPLES, of more runs from `more`."""
    key = _key(cpus)
    cached = json_cache.load(CACHE).get(key)
    if isinstance(cached, (int, float)) and cached > 0:
        return float(cached)
    samples = list(samples) + [more() for _ in range(MIN_SAMPLES - len(samples))]
    value = statistics.median(samples)
    json_cache.update(CACHE, {key: value})
    return value
