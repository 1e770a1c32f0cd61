"""A stronger EPLB baseline: global D'Hondt replication and LPT placement of a mean-reverting load forecast.

A placement is fitted on one window and scored on the next, so what counts is the next
window's balance, not the fitted one's. Three choices, each kept because it raised next-window
GPU-level balancedness on the `default` suite's traces (bench/bench_baselines.py prints them):

* Global, not hierarchical. The seed keeps each expert group on one node (DeepSeek's
  node-limited routing); with 8 groups over 4 nodes that costs DeepSeek-V3 prefill balance
  even in sample (0.95 where a global packing reaches 0.99). The scored metric is GPU-level
  balance, which does not see node locality, so this baseline replicates and places all
  experts over all GPUs. It therefore ignores `num_groups` and `num_nodes`; a deployment that
  needs group locality would not use it.
* Forecast by regression to the mean. Expert popularity drifts but mean-reverts and every
  window carries batch noise, so an expert that looks hot is, on average, a little less hot
  in the next window (and a cold one a little warmer). Each layer's loads are shrunk towards
  their geometric mean in log space, load ** SHRINK (a per-layer scale changes nothing). The
  Bayes factor for the suite's traffic is 0.87-0.97 depending on the layer; 0.9 did as well
  as any per-layer estimate and is the simplest.
* D'Hondt replication (each extra replica to the expert with the largest forecast load per
  replica: the fewest, smallest largest replicas) and LPT placement done round by round: the
  G heaviest remaining replicas go one to each GPU, the heaviest onto the lightest GPU. This
  gives the same balance as item-by-item LPT on these shapes (identical to 4 decimals) in
  R/G vectorised steps instead of R, and on 2 slots per GPU it is exactly "pair the heaviest
  with the lightest", optimal in sample for two items per GPU.

Where the remaining loss is (measured with the seed's own placement procedure on the default
suite's search windows): fitted on the window it is scored on, it would reach 0.95-1.0 (0.87 on
decode's 2 slots per GPU); fitted on the next window's true popularity (no batch noise),
0.74-0.96 where it gets 0.55-0.92 from the past window; fitted on what the current window's
noise-free popularity forecasts, only +0.01 to +0.03 more. So most of the loss is the next
window's own batch noise, drift and traffic shifts, which nothing computed from the past
foresees, and the rest is the current window's batch noise, which one window cannot tell apart
from popularity (the shrinkage above is the Bayes answer to that). Tried and left out, because
on 58-348 extra window pairs per scenario (29 search pairs for the sample-average one) none beat
this program beyond noise (differences -0.004 to +0.0006, standard errors 0.0004-0.0015):
variance-aware placement (swaps minimising max over GPUs of mean + k * sd, k = 1..3),
sample-average minimisation of the expected largest GPU load under lognormal noise, replication
minimising the expected largest replica load (with and without traffic shifts), Huntington-Hill
and other divisor methods, noise-inflated loads (w + c * sqrt(w)), per-layer empirical-Bayes
shrinkage, and re-balancing the replica counts for the 2-slot pairing. The program keeps no
state between calls: every placement comes from the one window it is given.

Standalone (torch and the standard library only): the evaluator loads it like any program.
Computed on the CPU in float64; the returned tensors are int64 on the CPU.
"""
from __future__ import annotations

import torch

SHRINK = 0.9  # log-space regression-to-the-mean factor of the forecast; 1.0 = no forecast


def _forecast(weight: torch.Tensor) -> torch.Tensor:
    """[L, E] float64 forecast of the next window's loads: each layer's loads ** SHRINK.

    Loads are first divided by the layer's largest one, so any scale (token counts, fractions,
    huge floats) gives the same placement and the power cannot overflow. NaN and negative
    loads count as zero; +inf as the largest float.
    """
    load = weight.detach().to("cpu", torch.float64)
    load = torch.nan_to_num(load, nan=0.0, posinf=torch.finfo(torch.float64).max, neginf=0.0).clamp_(min=0.0)
    peak = load.amax(dim=-1, keepdim=True)
    load = load / torch.where(peak > 0, peak, torch.ones_like(peak))
    return load**SHRINK


def _replica_counts(forecast: torch.Tensor, num_replicas: int) -> torch.Tensor:
    """D'Hondt: [L, E] int64 replica counts, each extra replica to the largest load per replica.

    This minimises the largest per-replica load, which on few slots per GPU (DeepSeek-V3
    decode: 2) is what sets the busiest GPU. One vectorised step per extra replica; measured
    faster than a top-k over all quotients at these sizes.
    """
    num_layers, num_experts = forecast.shape
    counts = torch.ones(num_layers, num_experts, dtype=torch.float64)
    one = torch.ones(num_layers, 1, dtype=torch.float64)
    for _ in range(num_replicas - num_experts):
        counts.scatter_add_(-1, (forecast / counts).argmax(-1, keepdim=True), one)
    return counts.long()


def _pack_rounds(item_load: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """[L, R] slot of each item: R/G rounds, each giving the G heaviest remaining items one per GPU.

    Within a round the heaviest item goes to the currently lightest GPU (stable ties: lower
    GPU first), so each GPU gets exactly R/G items and loads even out as items get smaller.
    A round's items take slot `round` of their GPU: GPU g owns slots [g*R/G, (g+1)*R/G).
    """
    num_layers, num_items = item_load.shape
    slots_per_gpu = num_items // num_gpus
    sorted_load, order = torch.sort(item_load, dim=-1, descending=True, stable=True)
    gpu_load = torch.zeros(num_layers, num_gpus, dtype=item_load.dtype)
    slot_sorted = torch.empty(num_layers, num_items, dtype=torch.int64)
    for rnd in range(slots_per_gpu):
        lightest_first = torch.argsort(gpu_load, dim=-1, stable=True)
        chunk = slice(rnd * num_gpus, (rnd + 1) * num_gpus)
        slot_sorted[:, chunk] = lightest_first * slots_per_gpu + rnd
        gpu_load.scatter_add_(-1, lightest_first, sorted_load[:, chunk])
    return torch.empty_like(order).scatter_(-1, order, slot_sorted)


def rebalance_experts(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(phy2log [L, R], log2phy [L, E, R-E+1], logcnt [L, E]), int64 on the CPU.

    `num_groups` and `num_nodes` are accepted for the common signature and ignored (see the
    module docstring).
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be [layers, experts], got shape {tuple(weight.shape)}")
    num_layers, num_experts = weight.shape
    if num_replicas < num_experts or num_gpus < 1 or num_replicas % num_gpus != 0:
        raise ValueError(f"need experts <= num_replicas and num_gpus | num_replicas; got "
                         f"E={num_experts}, R={num_replicas}, G={num_gpus}")
    forecast = _forecast(weight)
    logcnt = _replica_counts(forecast, num_replicas)

    # Replicas in expert-major order: replica i is copy number `rank` of expert `expert`.
    expert = torch.repeat_interleave(torch.arange(num_experts).repeat(num_layers), logcnt.flatten())
    expert = expert.view(num_layers, num_replicas)
    rank = torch.arange(num_replicas) - (logcnt.cumsum(-1) - logcnt).gather(-1, expert)
    slot = _pack_rounds((forecast / logcnt).gather(-1, expert), num_gpus)

    phy2log = torch.empty_like(expert).scatter_(-1, slot, expert)
    max_count = num_replicas - num_experts + 1
    log2phy = torch.full((num_layers, num_experts * max_count), -1, dtype=torch.int64)
    log2phy.scatter_(-1, expert * max_count + rank, slot)
    return phy2log, log2phy.view(num_layers, num_experts, max_count), logcnt
