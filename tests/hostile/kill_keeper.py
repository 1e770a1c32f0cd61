# prepend: honest.py
"""Tries to SIGKILL its keeper (its parent process) and the fork server, then answers correctly.

Expected: when the sandbox runs as root the child has a uid of its own and gets PermissionError; either way
the evaluation ends with nothing left behind.
"""
import os
import signal

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    try:
        os.kill(os.getppid(), signal.SIGKILL)
        print("KILL-KEEPER: done", flush=True)
    except OSError as exc:
        print(f"KILL-KEEPER: {type(exc).__name__}", flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
