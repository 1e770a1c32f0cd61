"""Returns None. Expected: 'BadReturn in call 1: returned NoneType, expected a tuple ...'."""


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return None
