"""Sleeps for an hour at import. Expected: 'import timed out after <load_timeout_s> s'."""
import time

time.sleep(3600)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
