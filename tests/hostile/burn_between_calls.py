# prepend: honest.py
"""Starts CPU burners on its first call -- a thread and a forked process, spinning forever -- so that
anything timed on its core between calls (the yardstick) would run at half speed.

Expected: the keeper stops them while it times the yardstick, so the yardstick is not slowed;
they run again afterwards, and the candidate's next call works."""
import os
import threading

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
started = []


def _spin():
    while True:
        pass


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    if not started:
        started.append(threading.Thread(target=_spin, daemon=True))
        started[0].start()
        if os.fork() == 0:
            _spin()
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
