"""Returns a 2-tuple. Expected: 'BadReturn in call 1: returned a tuple of 2 items ...'."""
import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64)
