"""Overflows the C stack: the C JSON encoder on a list nested 500k deep, recursion guard lifted.

Expected: 'killed by SIGSEGV during call 1' (Python 3.11); Python 3.12's C recursion guard
stops the encoder first: 'RecursionError in call 1: maximum recursion depth exceeded ...'.
"""
import json
import sys


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    sys.setrecursionlimit(1 << 30)
    nested = []
    for _ in range(500_000):
        nested = [nested]
    return json.dumps(nested, check_circular=False)
