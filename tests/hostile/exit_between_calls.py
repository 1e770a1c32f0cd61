# prepend: honest.py
"""Returns from its call, then exits 0.2 s later from a timer thread, while the evaluator is between calls.

Expected: the next request (here the yardstick) fails with 'exited with status 9 during the timing
reference after call 1'."""
import os
import threading

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    threading.Timer(0.2, os._exit, args=(9,)).start()
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
