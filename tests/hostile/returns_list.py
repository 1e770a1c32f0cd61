"""Returns a list of 3 tensors. Expected: 'BadReturn in call 1: returned list, expected a tuple ...'."""
import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return [torch.zeros(2, dtype=torch.int64)] * 3
