"""Does not parse. Expected: 'SyntaxError at import: ...'."""


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return (weight,, weight)
