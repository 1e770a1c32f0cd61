"""Prints without end (gigabytes if allowed). Expected: a timeout; the capture stays capped."""
import sys


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    print("FLOOD-START")
    line = "x" * 1023 + "\n"
    block = line * 1024
    while True:
        sys.stdout.write(block)
        sys.stderr.write(block)
