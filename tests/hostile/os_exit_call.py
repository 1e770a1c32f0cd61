"""Calls os._exit(7) inside the call. Expected: 'exited with status 7 during call 1'."""
import os


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    print("leaving abruptly", flush=True)
    os._exit(7)
