# prepend: honest.py
"""Freezes every clock in the `time` module, then works (sleeps) for 0.3 s per call.

Expected: 'timing tampering: child reported ... ms, parent measured ... ms in call 1'.
"""
import time

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
_sleep = time.sleep
for _name in ("perf_counter", "monotonic", "time", "process_time", "thread_time"):
    setattr(time, _name, lambda: 1.0)
    setattr(time, _name + "_ns", lambda: 1_000_000_000)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    _sleep(0.3)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
