# prepend: honest.py
"""Returns tensor subclasses whose __reduce_ex__ would run a command in whoever unpickles them.

Expected: a valid result made of plain torch.Tensor objects, and the file __MARKER__ never created
(the evaluator never unpickles anything the child sends).
"""
import os

import torch

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


class Hostile(torch.Tensor):
    def __reduce_ex__(self, protocol):
        return (os.system, ("touch __MARKER__",))


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    answer = honest_answer(weight, num_replicas, num_groups, num_nodes, num_gpus)
    return tuple(t.as_subclass(Hostile) for t in answer)
