"""Raises inside the call. Expected: 'ValueError in call 1: window rejected by candidate'."""


def helper(weight):
    raise ValueError("window rejected by candidate")


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    print("about to fail")
    return helper(weight)
