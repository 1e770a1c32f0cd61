"""Spins forever inside the call. Expected: 'call 1 timed out after <call_timeout_s> s'."""


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    while True:
        pass
