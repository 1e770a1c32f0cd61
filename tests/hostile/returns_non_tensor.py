"""Returns a 3-tuple of lists. Expected: 'BadReturn in call 1: ... item 0 is list ...'."""


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return [0] * num_replicas, [[0]], [1]
