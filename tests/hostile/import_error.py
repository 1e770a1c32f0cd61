"""Fails at import: a module that does not exist. Expected: 'ModuleNotFoundError at import: ...'."""
import eplb_no_such_module_xyz  # noqa: F401


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    raise AssertionError("never reached")
