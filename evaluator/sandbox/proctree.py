"""Finding and killing a process's whole subtree, including processes that tried to escape it.

Why not process groups: a candidate can call setsid() and leave any group or session. What it cannot
leave is its ancestry: the process that calls these functions is a *child subreaper*
(see privileges.set_child_subreaper), so every orphan below it -- double-forked, setsid'ed or not --
is reparented to it rather than to init. Killing its children over and over, reaping as it goes,
therefore converges on an empty subtree: each round kills the current children, and their own
children become its children for the next round.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable


def children(pid: int) -> set[int]:
    """The direct children of `pid` (all its threads'), from /proc/<pid>/task/*/children."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.update(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def reap_children() -> list[tuple[int, int]]:
    """Collect every exited child of this process without blocking: (pid, wait status) pairs."""
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, status))


def kill_subtree(spare: Iterable[int] = (), timeout_s: float = 5.0,
                 reap: Callable[[], object] = reap_children) -> bool:
    """SIGKILL every descendant of this (subreaper) process except the `spare` children's subtrees.

    `reap` collects exited children (a caller that must notice some of them passes its own).
    Returns True when nothing is left, False if something outlived `timeout_s` (a process stuck in
    uninterruptible sleep, say).
    """
    spared = set(spare)
    me = os.getpid()
    end = time.monotonic() + timeout_s
    while True:
        reap()
        targets = children(me) - spared
        if not targets:
            return True
        if time.monotonic() > end:
            return False
        _signal_all(targets, signal.SIGKILL)
        time.sleep(0.001)  # let the kills land and the zombies appear before the next round


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, theirs, ...), as /proc shows them now."""
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = set().union(*(children(p) for p in frontier)) - found
        found |= frontier
    return found


def stop_subtree(rounds: int = 10) -> set[int]:
    """SIGSTOP every descendant of this process, looking again until no new one appears (one may
    have been forking as its parent was stopped); returns the pids stopped, for `resume`."""
    stopped: set[int] = set()
    for _ in range(rounds):
        fresh = descendants(os.getpid()) - stopped
        if not fresh:
            break
        _signal_all(fresh, signal.SIGSTOP)
        stopped |= fresh
    return stopped


def resume(pids: Iterable[int]) -> None:
    """SIGCONT each of `pids` that still exists."""
    _signal_all(pids, signal.SIGCONT)


def _signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def tasks_of_user(uid: int) -> int:
    """How many tasks (threads) processes whose real uid is `uid` have now, as /proc shows them:
    what RLIMIT_NPROC counts."""
    total = 0
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue  # gone meanwhile
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
