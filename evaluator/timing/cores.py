"""Which CPUs a timed candidate runs on: whole physical cores, held machine-wide while it is timed.

Timing needs a candidate to stay on the cores it started on: an unpinned child migrates between
cores whose speed differs from moment to moment on a shared host, and the per-call reference that
normalises its runtime (evaluator.timing.yardstick) only cancels that noise when it runs on the same core.
So every evaluation is pinned: to a worker slot's cores when the harness gives one, else to the
first free `threads` cores of this process's CPUs.

And two timed runs must never share a core, whoever started them: local worker slots, Ray tasks
(Ray does not pin tasks; several run on one node at once), or an `eplb-evolve eval` typed while a
search runs. So an evaluation *claims* its cores for as long as it runs: an exclusive flock on one
lock file per CPU in a machine-wide folder, released when the evaluation ends or its process dies.
Given cores are waited for; without given cores the first slot with every CPU free is taken. When
nothing frees up within the wait, the evaluation goes on unclaimed and says so on stderr (pinned
to the given cores, or unpinned), rather than hang.
"""
from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

LOCK_DIR = Path(tempfile.gettempdir()) / "eplb-evolve-cores"
POLL_S = 0.05
WAIT_S = 600.0  # the longest an evaluation waits for cores (the default evaluation deadline)


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


def core_slots(cores: Sequence[Sequence[int]], threads: int) -> list[tuple[int, ...]]:
    """`cores` (each core's CPUs) as consecutive disjoint slots of `threads` cores; one slot of
    them all if there are fewer than `threads`."""
    size = max(1, min(threads, len(cores)))
    return [tuple(sorted(cpu for core in cores[i:i + size] for cpu in core))
            for i in range(0, len(cores) - size + 1, size)]


def slots_here(threads: int) -> list[tuple[int, ...]]:
    """This process's CPUs as slots of `threads` physical cores (`core_slots`)."""
    return core_slots(physical_cores(sorted(os.sched_getaffinity(0))), threads)


def _try_claim(cpus: tuple[int, ...]) -> list[int] | None:
    """Exclusive locks on every CPU of `cpus`, or None (and nothing held) if any is taken."""
    if not LOCK_DIR.is_dir():
        LOCK_DIR.mkdir(exist_ok=True)
        os.chmod(LOCK_DIR, 0o1777)  # every user's evaluations share it (sticky, like /tmp)
    held: list[int] = []
    for cpu in cpus:
        fd = os.open(LOCK_DIR / f"cpu{cpu}.lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            for other in held:
                os.close(other)
            return None
        held.append(fd)
    return held


@contextmanager
def claimed(cpus: tuple[int, ...], threads: int, wait_s: float = WAIT_S) -> Iterator[tuple[int, ...]]:
    """Hold cores for one evaluation and yield them: `cpus` if given (waiting for them), else the
    first free slot of `threads` cores here. Yields the cores to pin to, () for none."""
    candidates = [cpus] if cpus else slots_here(threads)
    give_up = time.monotonic() + wait_s
    held = None
    while held is None:
        for option in candidates:
            if (held := _try_claim(option)) is not None:
                chosen = option
                break
        else:
            if time.monotonic() > give_up:
                print(f"eplb-evolve: no free cores for {wait_s:g} s (held by other evaluations, see "
                      f"{LOCK_DIR}); evaluating without claiming any", file=sys.stderr)
                chosen, held = cpus, []
            else:
                time.sleep(POLL_S)
    try:
        yield chosen
    finally:
        for fd in held:
            os.close(fd)
