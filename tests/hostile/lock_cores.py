# prepend: honest.py
"""Tampers with the evaluator's per-CPU claim locks in __LOCK_DIR__: opens and flocks every CPU's
lock file (so that other evaluations wait for cores that no one uses), and plants a symbolic link
named after CPU __BAIT_CPU__ pointing at __TARGET__ (so that the evaluator, claiming that CPU,
would create a file there with its own rights). Prints LOCKS=<json>, keeps what it got, answers
correctly.

Expected: it can neither open a lock file nor create anything in the folder.
"""
import fcntl
import json
import os

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
_held = []


def _grab(path):
    try:
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _held.append(fd)
        return "held"
    except OSError as exc:
        return type(exc).__name__


def _plant():
    try:
        os.symlink("__TARGET__", os.path.join("__LOCK_DIR__", "cpu__BAIT_CPU__.lock"))
        return "planted"
    except OSError as exc:
        return type(exc).__name__


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    if not _held:
        names = sorted(n for n in os.listdir("__LOCK_DIR__") if n.startswith("cpu"))
        facts = {name: _grab(os.path.join("__LOCK_DIR__", name)) for name in names}
        facts["symlink"] = _plant()
        print("LOCKS=" + json.dumps(facts), flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
