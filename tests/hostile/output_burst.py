# prepend: honest.py
"""Prints 32 MB, then answers correctly. Expected: a valid result; output capped with head and tail."""
import sys

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    print("BURST-FIRST-LINE")
    block = ("y" * 1023 + "\n") * 1024
    for _ in range(32):
        sys.stdout.write(block)
    print("BURST-LAST-LINE")
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
