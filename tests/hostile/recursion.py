"""Recurses without end. Expected: 'RecursionError in call 1: maximum recursion depth ...'."""


def descend(depth):
    return descend(depth + 1) + 1


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return descend(0)
