"""Returns a 1-element tensor expanded to 2**40 elements (a view: no memory until copied).

Expected: 'BadReturn in call 1: the outputs hold ... bytes, more than the ...', with no attempt to
copy 8 TB.
"""
import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    huge = torch.zeros(1, dtype=torch.int64).expand(1 << 40)
    return huge, huge, huge
