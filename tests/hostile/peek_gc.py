# prepend: honest.py
"""Looks for windows it was never given in the child's memory: every object gc tracks and every
frame's locals up the stack (the evaluator's child code included).

Expected: it prints UNSEEN-WINDOWS=0 in every call -- future windows never leave the evaluator.
(Past windows may still be reachable: reading a frame's f_locals itself keeps them alive.)
"""
import gc
import sys

import torch

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
_given = []


def _unseen(obj, weight):
    return (isinstance(obj, torch.Tensor) and obj.shape == weight.shape
            and obj.dtype == weight.dtype and not any(torch.equal(obj, g) for g in _given))


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    _given.append(weight.clone())
    unseen = {id(obj) for obj in gc.get_objects() if _unseen(obj, weight)}
    frame = sys._getframe(1)
    while frame is not None:
        unseen.update(id(v) for v in frame.f_locals.values() if _unseen(v, weight))
        frame = frame.f_back
    print(f"UNSEEN-WINDOWS={len(unseen)}", flush=True)
    return honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
