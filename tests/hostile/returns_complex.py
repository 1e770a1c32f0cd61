"""Returns complex tensors, a dtype the wire format does not carry.

Expected: 'BadReturn in call 1: output 0 has dtype torch.complex64 ...'.
"""
import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    value = torch.zeros(2, dtype=torch.complex64)
    return value, value, value
