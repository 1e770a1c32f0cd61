# prepend: honest.py
"""Works (sleeps) 60 ms per call but patches the evaluator's wire module in the child to claim
5 ms less -- a lie small enough to hide in the scheduling-noise allowance.

Expected: the call is accepted, but its runtime_s is the evaluator's lower bound, within a few
milliseconds of the truth: the lie buys (almost) nothing.
"""
import gc
import time
import types

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
_wire = next(m for m in gc.get_objects()  # not in sys.modules: gc still reaches it
             if isinstance(m, types.ModuleType) and m.__name__ == "evaluator.sandbox.wire")
_send = _wire.send


def _shaved_send(sock, header, tensors=()):
    if "runtime_ns" in header:
        header = {**header, "runtime_ns": max(0, header["runtime_ns"] - 5_000_000)}
    return _send(sock, header, tensors)


_wire.send = _shaved_send


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    time.sleep(0.06)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
