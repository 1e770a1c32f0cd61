"""Defines the wrong name. Expected: 'MissingEntryPoint at import: ...rebalance_experts...'."""


def rebalance(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return None
