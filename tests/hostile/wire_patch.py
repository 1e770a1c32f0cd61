# prepend: honest.py
"""Patches the evaluator's own wire module in the child so every reply claims a 1 us runtime, then
works (sleeps) for 0.3 s per call. (It finds the module through gc: the child's own modules are not
in sys.modules.)

Expected: 'timing tampering: child reported 0.001 ms, parent measured ... ms in call 1'.
"""
import gc
import time
import types

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
_wire = next(m for m in gc.get_objects()
             if isinstance(m, types.ModuleType) and m.__name__ == "evaluator.sandbox.wire")
_send = _wire.send


def _forged_send(sock, header, tensors=()):
    if "runtime_ns" in header:
        header = {**header, "runtime_ns": 1000}
    return _send(sock, header, tensors)


_wire.send = _forged_send


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    time.sleep(0.3)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
