"""Scoring physics (pure): how balanced a placement is on a load window, the bound, the combined score.

A layer's time is set by its most loaded GPU and layers run one after another, so balancedness is a
ratio of sums over layers, not a mean of per-layer ratios. Every function is vectorised over layers:
scoring one DeepSeek-V3 window costs well under a millisecond, so the evaluator's own work never
hides in (or inflates) a candidate's figures.
"""
from __future__ import annotations

import statistics

import torch


def slot_loads(window: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor) -> torch.Tensor:
    """[L, R] load on each physical slot: an expert's tokens split evenly over its replicas."""
    per_replica = window.to(torch.float64) / logcnt.to(torch.float64)
    return torch.gather(per_replica, 1, phy2log)


def gpu_loads(slots: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """[L, G] load per GPU; GPU g owns slots [g*R/G, (g+1)*R/G)."""
    num_layers, num_slots = slots.shape
    return slots.reshape(num_layers, num_gpus, num_slots // num_gpus).sum(-1)


def balancedness(loads: torch.Tensor) -> float:
    """sum_l mean_x load[l, x] / sum_l max_x load[l, x], in (0, 1]; 1.0 for an all-zero window."""
    peak = loads.max(dim=1).values.sum().item()
    if peak <= 0:
        return 1.0
    return loads.mean(dim=1).sum().item() / peak


def placement_balancedness(window: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor,
                           num_gpus: int) -> tuple[float, float]:
    """(GPU-level, slot-level) balancedness of a placement on a load window."""
    slots = slot_loads(window, phy2log, logcnt)
    return balancedness(gpu_loads(slots, num_gpus)), balancedness(slots)


def min_max_replica_load(window: torch.Tensor, num_replicas: int) -> torch.Tensor:
    """[L] r*: the smallest achievable largest per-replica load with `num_replicas` replicas per layer.

    Giving each expert the most replicas first to the currently largest w/count (D'Hondt) is optimal for
    this objective; we reach the same optimum by bisection on the threshold t: an expert needs
    ceil(w/t) replicas, and t is feasible when those fit in `num_replicas`. Vectorised over layers.
    """
    w = window.to(torch.float64)
    lo = torch.zeros(w.shape[0], dtype=torch.float64)
    hi = w.max(dim=1).values.clamp_min(1e-12)
    for _ in range(60):
        mid = (lo + hi) / 2
        need = torch.ceil(w / mid.unsqueeze(1)).clamp_min(1).sum(dim=1)
        feasible = need <= num_replicas
        hi = torch.where(feasible, mid, hi)
        lo = torch.where(feasible, lo, mid)
    return hi


def bound_balancedness(window: torch.Tensor, num_replicas: int, num_gpus: int) -> float:
    """Best GPU-level balancedness any placement could reach on this window (knowing it in advance).

    A layer's busiest GPU carries at least max(W/G, r*): the mean, and the largest replica load.
    """
    w = window.to(torch.float64)
    mean = w.sum(dim=1) / num_gpus
    floor = torch.maximum(mean, min_max_replica_load(w, num_replicas))
    peak = floor.sum().item()
    return 1.0 if peak <= 0 else mean.sum().item() / peak


def speed_factor(runtime_s: float, period_s: float) -> float:
    """P / (P + t): the share of a rebalance period not spent computing the placement. Bounded in (0, 1]."""
    return period_s / (period_s + max(runtime_s, 0.0))


def combined_score(balancedness_value: float, runtime_s: float, period_s: float) -> float:
    """Deployment value: balancedness discounted by the time the rebalance itself takes.

    Never the unbounded c / time that let speed swamp balance in earlier evaluators.
    """
    return balancedness_value * speed_factor(runtime_s, period_s)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def coefficient_of_variation(values: list[float]) -> float:
    """stdev / mean over repeated measurements (0 for fewer than two)."""
    if len(values) < 2:
        return 0.0
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else 0.0
