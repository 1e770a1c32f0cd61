# prepend: honest.py
"""Leaves a daemon behind: forks, calls setsid, forks again and execs `sleep` under the name
__MARKER__, then answers correctly.

Expected: a valid result, and once the evaluation is closed no process named __MARKER__ survives.
"""
import os

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def _daemonise():
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["__MARKER__", "1000"])
        os._exit(0)
    os.waitpid(first, 0)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    _daemonise()
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
