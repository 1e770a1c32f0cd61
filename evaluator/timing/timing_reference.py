"""This machine's calibrated yardstick time: the reference that normalised runtimes are expressed in.

A normalised runtime is `raw x reference / yardstick-now` (evaluator.timing.yardstick). For it to mean
the same thing in every evaluation -- this process or another, on whichever of the machine's
cores, today or next week -- `reference` must be one fixed figure per machine. (Not per core: the
cores of one machine have the same nominal speed, while figures calibrated at different moments
on a host whose speed swings would differ by up to 2x and make runs on different cores
incomparable.) It is calibrated by the first evaluation that needs it, as the median of all the
yardstick times taken beside its calls (topped up to MIN_SAMPLES runs if it made fewer), and
cached. Taken over a whole evaluation rather than a burst of back-to-back runs, it spans the
host's fast and slow stretches. The key names everything the figure depends on (host, torch, the
yardstick's code), so a changed set-up is calibrated afresh; deleting the cache file does too.
"""
from __future__ import annotations

import hashlib
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from evaluator.timing import json_cache, yardstick

CACHE = "yardstick.json"
MIN_SAMPLES = 21


def fingerprint() -> str:
    """Which yardstick: a digest of its code (a changed workload makes old figures meaningless)."""
    return hashlib.sha256(Path(yardstick.__file__).read_bytes()).hexdigest()[:12]


def _key() -> str:
    return "|".join((platform.node(), torch.__version__, fingerprint()))


def cached_reference_ms() -> float | None:
    """This machine's reference if it has been calibrated, else None."""
    cached = json_cache.load(CACHE).get(_key())
    return float(cached) if isinstance(cached, (int, float)) and cached > 0 else None


def reference_ms(samples: list[float], more: Callable[[], float]) -> float:
    """The cached reference; without one, the median of `samples` (yardstick times of the
    evaluation asking, in ms) and, if there are fewer than MIN_SAMPLES, of more runs from `more`."""
    cached = cached_reference_ms()
    if cached is not None:
        return cached
    samples = list(samples) + [more() for _ in range(MIN_SAMPLES - len(samples))]
    value = statistics.median(samples)
    json_cache.update(CACHE, {_key(): value})
    return value
