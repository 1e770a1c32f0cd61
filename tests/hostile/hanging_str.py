"""Raises an exception whose __str__ never returns, so that formatting it for the failure report
hangs the child.

Expected: the failure is reported within a few seconds (the formatting gets 2 s), naming the
exception's type, not after the call's whole time limit.
"""


class Hanging(Exception):
    def __str__(self):
        while True:
            pass


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise Hanging()
