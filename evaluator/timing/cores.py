"""Which CPUs a timed candidate runs on: whole physical cores, held machine-wide while it is timed.

Timing needs a candidate to stay on the cores it started on: an unpinned child migrates between
cores whose speed differs from moment to moment on a shared host, and the per-call reference that
normalises its runtime (evaluator.timing.yardstick) only cancels that noise when it runs on the same core.
So every evaluation is pinned: to a worker slot's cores when the harness gives one, else to the
first free `threads` cores of this process's CPUs.

And two timed runs must never share a core, whoever started them: local worker slots, Ray tasks
(Ray does not pin tasks; several run on one node at once), or an `eplb-evolve eval` typed while a
search runs. So an evaluation *claims* its cores for as long as it runs: an exclusive flock on one
lock file per CPU, released when the evaluation ends or its process dies. Given cores are waited
for; without given cores the first slot with every CPU free is taken. When nothing frees up within
the wait, the evaluation goes on unclaimed and says so on stderr (pinned to the given cores, or
unpinned), rather than hang.

The lock files (`try_lock`, which the sandbox also uses to hand out candidate uids) live in a
folder private to the evaluator's user -- `eplb-evolve-<uid>` in the temp folder, owned by it and
writable by it alone -- and are created 0600 and opened without following symlinks. So a candidate
running under another uid (as it does when the harness runs as root) can neither hold a lock (an
flock needs only an open file, which it cannot get) nor plant a link that makes the evaluator
create a file where it points. Evaluations of different users do not coordinate their cores.
"""
from __future__ import annotations

import fcntl
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from evaluator.errors import UserError

LOCK_DIR = Path(tempfile.gettempdir()) / f"eplb-evolve-{os.geteuid()}"
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


def _lock_folder() -> int:
    """An open descriptor of LOCK_DIR, created if missing; UserError unless it is a real folder
    owned by this process's user that no one else can write to."""
    try:
        os.mkdir(LOCK_DIR, 0o755)
    except FileExistsError:
        pass
    try:
        fd = os.open(LOCK_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:  # a symbolic link, or not a folder
        raise UserError(f"{LOCK_DIR}: the evaluator's lock folder is not a folder ({error.strerror}); "
                        "remove it and run again") from None
    found = os.fstat(fd)
    if found.st_uid != os.geteuid() or found.st_mode & 0o022:
        os.close(fd)
        raise UserError(f"{LOCK_DIR}: the evaluator's lock folder belongs to uid {found.st_uid} with mode "
                        f"{stat.filemode(found.st_mode)}; it must be uid {os.geteuid()}'s alone: remove it "
                        "and run again")
    return fd


def try_lock(name: str) -> int | None:
    """An exclusive flock on LOCK_DIR/`name` (see the module docstring), as an open descriptor
    to close to release it; None if someone else holds it."""
    folder = _lock_folder()
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
    finally:
        os.close(folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _try_claim(cpus: tuple[int, ...]) -> list[int] | None:
    """Exclusive locks on every CPU of `cpus`, or None (and nothing held) if any is taken."""
    held: list[int] = []
    for cpu in cpus:
        fd = try_lock(f"cpu{cpu}.lock")
        if fd is None:
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
