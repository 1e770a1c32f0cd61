# prepend: honest.py
"""Honest and GPU-resident: queues ~1 s of GPU work, returns CUDA tensors without synchronising.

Timed right, its runtime includes the queued work; a clock stopped when the function returns
would see a few milliseconds."""
import torch

cpu_answer = rebalance_experts  # noqa: F821 -- defined by honest.py, put in front of this file


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    torch.cuda._sleep(2_000_000_000)  # 2e9 GPU clock cycles: >= 1 s at the H100's top clock
    return tuple(t.to(weight.device, non_blocking=True)
                 for t in cpu_answer(weight.cpu(), num_replicas, num_groups, num_nodes, num_gpus))
