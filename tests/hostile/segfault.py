"""Reads address 0. Expected: 'killed by SIGSEGV during call 1'."""
import ctypes


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return ctypes.string_at(0)
