"""Which CPUs a timed candidate runs on: physical cores, read from sysfs.

Timing needs a candidate to stay on the cores it started on: an unpinned child migrates between
cores whose speed differs from moment to moment on a shared host, and the per-call reference that
normalises its runtime (evaluator.yardstick) only cancels that noise when it runs on the same core.
So every evaluation is pinned: to a worker slot's cores when the harness gives one, else to the
first cores this process may use (`default_cpus`), which is where a one-worker run's slot lies too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def physical_cores(cpus: Sequence[int]) -> list[tuple[int, ...]]:
    """`cpus` grouped by physical core (hyperthread siblings together), as sysfs tells; a CPU it
    says nothing about is a core of its own."""
    cores: dict[str, list[int]] = {}
    for cpu in sorted(cpus):
        try:
            key = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            key = f"cpu{cpu}"
        cores.setdefault(key, []).append(cpu)
    return [tuple(core) for core in cores.values()]


def default_cpus(threads: int) -> tuple[int, ...]:
    """The CPUs of this process's first `threads` physical cores (all of them if it has fewer)."""
    cores = physical_cores(sorted(os.sched_getaffinity(0)))
    return tuple(sorted(cpu for core in cores[:max(1, threads)] for cpu in core))
