# prepend: honest.py
"""Memoises answers by a hash of the input -- in memory and in files under HOME -- and works
(sleeps) 0.2 s on a miss.

Expected: distinct windows take >= 0.2 s each, in one candidate process and again in a later one
(HOME is private to one evaluation and removed afterwards).
"""
import hashlib
import os
import time

import torch

honest_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file
_memory = {}


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    args = (num_replicas, num_groups, num_nodes, num_gpus)
    key = hashlib.sha256(weight.cpu().numpy().tobytes() + repr(args).encode()).hexdigest()
    path = os.path.join(os.environ["HOME"], key + ".pt")
    if key in _memory:
        return _memory[key]
    if os.path.exists(path):
        return tuple(torch.load(path))
    time.sleep(0.2)
    answer = honest_answer(weight, *args)
    _memory[key] = answer
    torch.save(list(answer), path)
    return answer
