# prepend: honest.py
"""Honest, but takes 0.2 s per call (sleeping): the reference for timing checks."""
import time

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    time.sleep(0.2)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
