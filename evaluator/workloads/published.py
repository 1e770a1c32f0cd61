"""The built-in suites' windows as shipped with the package: identical on every machine.

The synthetic generator draws with NumPy's Generator and float maths, whose results differ
between NumPy releases and CPUs (NumPy 2.4.6 and 2.5.2 gave different windows for 5 of the 8
default-suite window sets), so scores made on generated windows compare only between machines
that happen to generate the same ones. The built-in suites therefore read their search and
held-out windows, and the fixed popularity they were drawn from, from package data generated
once (`bench/make_published_windows.py`), and every machine scores the same loads.

One file per generated workload (a deployment's seed, shape and traffic parameters), holding as
many windows as the longest suite uses; a shorter suite on the same workload takes a prefix.
Counts are stored as the four byte planes of their uint32 form (the largest is a few million
tokens): deflate compresses the planes to about 2 bytes a count, where the interleaved uint32
bytes take 2.7 (measured on the built-in suites: 3.7 MB against 4.9 MB).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PUBLISHED_DIR = Path(__file__).resolve().parent / "windows"
_FORMAT = "eplb-evolve-published-windows-v1"
_COUNT_DTYPE = np.dtype("<u4")


@dataclass(frozen=True, eq=False)
class PublishedWindows:
    """One workload's shipped arrays, read-only: `base` [L, E] float64 log-popularity, windows [W, L, E] int64."""

    base: np.ndarray
    search: np.ndarray
    heldout: np.ndarray


def path_of(key: str) -> Path:
    return PUBLISHED_DIR / f"{key}.npz"


@functools.lru_cache(maxsize=16)
def load(key: str) -> PublishedWindows:
    """The shipped windows of workload `key`, cached per process (a few tens of milliseconds to read)."""
    with np.load(path_of(key)) as data:
        if str(data["format"]) != _FORMAT:
            raise RuntimeError(f"{path_of(key)} is not in format {_FORMAT}; regenerate it with "
                               "bench/make_published_windows.py")
        arrays = PublishedWindows(base=data["base"], search=_from_planes(data["search"]),
                                  heldout=_from_planes(data["heldout"]))
    for array in vars(arrays).values():
        array.flags.writeable = False
    return arrays


def save(key: str, base: np.ndarray, search: np.ndarray, heldout: np.ndarray) -> Path:
    """Write workload `key`'s arrays; refuses counts that uint32 cannot hold exactly."""
    for name, windows in (("search", search), ("heldout", heldout)):
        if windows.min() < 0 or windows.max() > np.iinfo(_COUNT_DTYPE).max:
            raise ValueError(f"{key} {name} windows do not fit {np.dtype(_COUNT_DTYPE).name}")
    path = path_of(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, format=np.array(_FORMAT), base=base.astype(np.float64),
                        search=_to_planes(search), heldout=_to_planes(heldout))
    load.cache_clear()
    return path


def _to_planes(counts: np.ndarray) -> np.ndarray:
    """[4, *shape] uint8: byte k of every count in plane k (little-endian), which deflate packs tightly."""
    return np.ascontiguousarray(np.moveaxis(counts.astype(_COUNT_DTYPE).view(np.uint8).reshape(*counts.shape, 4),
                                            -1, 0))


def _from_planes(planes: np.ndarray) -> np.ndarray:
    """The int64 counts back from `_to_planes`."""
    return np.ascontiguousarray(np.moveaxis(planes, 0, -1)).view(_COUNT_DTYPE)[..., 0].astype(np.int64)
