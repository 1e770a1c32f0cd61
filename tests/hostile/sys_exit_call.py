"""Calls sys.exit(3) inside the call. Expected: 'SystemExit in call 1: 3'."""
import sys


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    sys.exit(3)
