# prepend: honest.py
"""Overwrites its input window in place after answering.

Expected: a valid result, and the evaluator's own window is unchanged.
"""
honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    answer = honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
    weight.fill_(-1.0)
    return answer
