"""Returns a generator of tensors. Expected: 'BadReturn in call 1: returned generator ...'."""
import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return (torch.zeros(2, dtype=torch.int64) for _ in range(3))
