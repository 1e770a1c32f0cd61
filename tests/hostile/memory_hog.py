"""Allocates memory until it runs out. Expected: 'MemoryError in call 1' under RLIMIT_AS."""


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    blocks = []
    while True:
        blocks.append(bytearray(16 << 20))
