# prepend: honest.py
"""Floods the process table: forks up to __FORKS__ children that exit at once and are never waited
for (zombies it parks), then starts __ORPHANS__ orphans (double forks whose grandchildren exit at
once, reparented to its keeper) and, half a second later, counts the zombies its keeper holds.
Prints FLOOD=<json> and answers correctly.

Expected: the forks stop at the candidate's process limit (an OSError), and the keeper has reaped
every orphan: no zombie under it.
"""
import json
import os
import time

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def _zombies_under(pid):
    found = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in f.read().split():
                try:
                    with open(f"/proc/{child}/stat") as stat:
                        found += stat.read().rpartition(")")[2].split()[0] == "Z"
                except OSError:
                    pass
    return found


def _orphan():
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            os._exit(0)
        os._exit(0)
    os.waitpid(middle, 0)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    facts = {"orphans": 0}
    for _ in range(int("__ORPHANS__")):
        _orphan()
        facts["orphans"] += 1
    time.sleep(0.5)
    facts["zombies_under_keeper"] = _zombies_under(os.getppid())
    forked, error = 0, None
    for _ in range(int("__FORKS__")):
        try:
            if os.fork() == 0:
                os._exit(0)
        except OSError as exc:
            error = type(exc).__name__
            break
        forked += 1
    facts.update(forked=forked, error=error)
    print("FLOOD=" + json.dumps(facts), flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
