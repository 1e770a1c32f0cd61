"""Spins forever at import. Expected: 'import timed out after <load_timeout_s> s'."""
while True:
    pass


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
