# prepend: honest.py
"""Does its work the moment a window arrives, before the child starts its clock: it finds the child's
wire module (gc reaches it even when sys.modules does not) and wraps its recv, so that a message
carrying a window is "worked on" (0.3 s) on receipt; the timed call then returns the answer at once.

Expected: the work counts -- the runtime kept is at least 0.3 s, or the call fails as timing
tampering -- never a runtime of a millisecond.
"""
import gc
import time
import types

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
_wire = next(m for m in gc.get_objects()
             if isinstance(m, types.ModuleType) and m.__name__ == "evaluator.sandbox.wire")
_recv = _wire.recv


def _recv_and_work(sock, max_payload, deadline=None):
    message = _recv(sock, max_payload, deadline)
    if message.tensors:
        time.sleep(0.3)  # the real work, done while the child's clock is not running
    return message


_wire.recv = _recv_and_work


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
