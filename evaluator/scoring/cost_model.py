"""Deployment cost model: what a placement costs a serving deployment over one rebalance period.

Today's balancedness scores expert compute only. A deployment also pays for moving tokens to their
experts and back (dispatch and combine, over NVLink inside a node and over the NICs across nodes)
and for copying expert weights to the GPUs that get new experts at each rebalance. This module
models all three for one window, per MoE layer, vectorised over layers (torch, float64); the
constants come from `evaluator.workloads.deployment.DeploymentCosts`. docs/cost-model.md derives
and checks the model; in short, per layer and forward step (a window's loads / steps_per_window):

* compute: the busiest GPU's token-expert assignments x FLOPs per assignment / (peak x efficiency);
* communication: tokens start evenly on all GPUs (data-parallel attention). A token crosses once
  to each other node it touches (over the NIC, then NVLink fans it out there) and reaches each GPU
  holding one of its experts over NVLink. Dispatch and combine move the same copies (FP8 out,
  BF16 back); each phase takes max(busiest node's NIC time, busiest GPU's NVLink time), and
  compute, dispatch and combine add up (no overlap);
* migration, once per rebalance: each GPU receives the experts it did not hold, over NVLink when
  another GPU of its node held them, else over its NIC; the busiest GPU sets the time.

A layer's time is its compute plus its communication; layers run one after another, so a period
costs the sum over layers x rebalance_period_steps, plus the migration. The ideal is perfect
compute balance, the least communication routing allows (every token on as few GPUs and nodes as
the slots permit, traffic perfectly balanced) and no migration; efficiency = ideal / total.

Only per-expert loads are known, so which nodes and GPUs a token touches is modelled from them
(`touch_probabilities`): group-limited routing, each chosen group supplying a share of the
token's top-k draws. `simulate_routing` routes tokens one by one for the exact figures it is
checked against (tests/unit/test_cost_model.py; error in docs/cost-model.md).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from evaluator.scoring.metrics import gpu_loads, slot_loads
from evaluator.workloads.deployment import DeploymentCosts
from evaluator.workloads.shape import Shape

_F64 = torch.float64
_TINY = 1e-300


@dataclass(frozen=True)
class WindowCost:
    """Modelled milliseconds of one rebalance period (per-step time x period steps + migration)."""

    compute_ms: float  # expert GEMMs, each layer paced by its busiest GPU
    communication_ms: float  # dispatch + combine, each phase paced by its busiest node NIC or GPU NVLink
    migration_ms: float  # copying new experts' weights at the rebalance
    total_ms: float  # the three above
    ideal_ms: float  # balanced compute + least communication + no migration
    nodes_per_token: float  # expected distinct nodes a token's experts sit on (mean over tokens and layers)
    migrated_fraction: float  # share of slots (mean over layers) whose GPU had to receive the expert anew

    @property
    def efficiency(self) -> float:
        """ideal / total, in (0, 1]; 1.0 for a period that costs nothing."""
        return 1.0 if self.total_ms <= 0 else self.ideal_ms / self.total_ms


@torch.inference_mode()
def window_cost(loads: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor,
                previous_phy2log: torch.Tensor | None, shape: Shape, costs: DeploymentCosts) -> WindowCost:
    """The modelled cost of serving `loads` [L, E] (one window) with `phy2log` [L, R] / `logcnt` [L, E],
    re-placed from `previous_phy2log` (the placement in force; None: nothing to migrate)."""
    per_step = loads.to(_F64) / costs.steps_per_window
    tokens = per_step.sum(-1) / costs.experts_per_token
    slots = slot_loads(per_step, phy2log, logcnt)
    gpus = gpu_loads(slots, shape.num_gpus)
    assignment_s = costs.flops_per_assignment / (costs.flops_per_s * costs.flop_efficiency)
    node_touch, gpu_touch = _touch(slots / tokens.clamp_min(_TINY).unsqueeze(-1), phy2log, shape, costs)
    communication = communication_seconds(tokens, node_touch, gpu_touch, shape, costs)
    # The floor is exact for real routing; capping it at the modelled time keeps efficiency <= 1
    # where the touch approximation errs below it.
    least_communication = torch.minimum(_least_communication_seconds(tokens, shape, costs), communication)
    migration_s, migrated = migration(phy2log, previous_phy2log, shape, costs)

    period_ms = 1e3 * costs.period_steps
    compute_ms = period_ms * assignment_s * gpus.max(-1).values.sum().item()
    communication_ms = period_ms * communication.sum().item()
    migration_ms = 1e3 * migration_s
    ideal_ms = period_ms * (assignment_s * gpus.mean(-1).sum().item() + least_communication.sum().item())
    nodes = (tokens * node_touch.sum(-1)).sum().item() / max(tokens.sum().item(), _TINY)
    return WindowCost(compute_ms, communication_ms, migration_ms, compute_ms + communication_ms + migration_ms,
                      ideal_ms, nodes, migrated)


def scenario_cost(windows: Sequence[WindowCost]) -> WindowCost:
    """A scenario's figure: the mean of each field over its windows, so that `efficiency` (ideal /
    total of the means) is the ratio of sums: the share of the deployment's whole time that was needed."""
    if not windows:
        raise ValueError("scenario_cost needs at least one window")
    return WindowCost(*(sum(getattr(w, f.name) for w in windows) / len(windows) for f in fields(WindowCost)))


# -- communication ---------------------------------------------------------------------------------

def touch_probabilities(loads: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor, shape: Shape,
                        costs: DeploymentCosts) -> tuple[torch.Tensor, torch.Tensor]:
    """([L, N], [L, G]): the modelled probability that a token of each layer touches each node, GPU.

    From per-expert loads alone (derivation, assumptions and measured error in docs/cost-model.md):
    a token picks `groups_per_token` of the groups, subset S with probability proportional to the
    product of the groups' loads; a picked group supplies d_j = load_j / P(j picked) experts.
    Given S, the experts are taken as independent (each chosen with load_e / P(j picked), its copy
    sent to one of its replicas alike), corrected for each group supplying exactly d_j of them.
    """
    tokens = loads.to(_F64).sum(-1, keepdim=True) / costs.experts_per_token
    return _touch(slot_loads(loads, phy2log, logcnt) / tokens.clamp_min(_TINY), phy2log, shape, costs)


def communication_seconds(tokens: torch.Tensor, node_touch: torch.Tensor, gpu_touch: torch.Tensor, shape: Shape,
                          costs: DeploymentCosts) -> torch.Tensor:
    """[L] dispatch + combine seconds per step, from `tokens` [L] per step and touch probabilities.

    A token enters each touched node but its own over the NIC (its origin node is uniform, 1/N)
    and each touched GPU but the one it already sits on over NVLink (arriving tokens land on a
    uniform GPU of the node, so 1/(GPUs per node)). Takes exact touch frequencies too (the
    simulation's), so the approximation's error can be stated in seconds.
    """
    gpus_per_node = shape.num_gpus // shape.num_nodes
    nic_copies = tokens.unsqueeze(-1) * node_touch * (1 - 1 / shape.num_nodes)
    nvlink_copies = tokens.unsqueeze(-1) * gpu_touch * (1 - 1 / gpus_per_node)
    return _exchange_seconds(nic_copies.max(-1).values, nvlink_copies.max(-1).values, shape, costs)


def _exchange_seconds(node_nic_copies: torch.Tensor, gpu_nvlink_copies: torch.Tensor, shape: Shape,
                      costs: DeploymentCosts) -> torch.Tensor:
    """Dispatch + combine seconds from the busiest node's NIC copies and busiest GPU's NVLink copies.

    Each phase moves the same copies (dispatch at dispatch_bytes, combine at combine_bytes per
    value) and lasts as long as its slower link; a node's NIC bandwidth is its GPUs' NICs together.
    """
    gpus_per_node = shape.num_gpus // shape.num_nodes
    bytes_per_copy = costs.hidden_size * (costs.dispatch_bytes_per_value + costs.combine_bytes_per_value)
    nic = node_nic_copies * bytes_per_copy / (gpus_per_node * costs.internode_bytes_per_s)
    nvlink = gpu_nvlink_copies * bytes_per_copy / costs.nvlink_bytes_per_s
    return torch.maximum(nic, nvlink)


def _least_communication_seconds(tokens: torch.Tensor, shape: Shape, costs: DeploymentCosts) -> torch.Tensor:
    """[L] the ideal: every token on the fewest nodes and GPUs its k distinct experts fit in, traffic even."""
    k = costs.experts_per_token
    nodes = min(shape.num_nodes, math.ceil(k / (shape.num_replicas // shape.num_nodes)))
    gpus = min(shape.num_gpus, math.ceil(k / (shape.num_replicas // shape.num_gpus)))
    gpus_per_node = shape.num_gpus // shape.num_nodes
    nic = tokens * nodes * (1 - 1 / shape.num_nodes) / shape.num_nodes
    nvlink = tokens * gpus * (1 - 1 / gpus_per_node) / shape.num_gpus
    return _exchange_seconds(nic, nvlink, shape, costs)


def _routing_groups(shape: Shape, costs: DeploymentCosts) -> tuple[int, int]:
    """(groups, groups per token) of the routing: one group when routing is not group-limited."""
    if costs.groups_per_token >= shape.num_groups:
        return 1, 1
    return shape.num_groups, costs.groups_per_token


@dataclass(frozen=True)
class _Layout:
    """Index tensors that depend on the shape alone (cached: rebuilding them was a tenth of a call)."""

    unit_key: torch.Tensor  # [2, 1, R] (the slot's GPU, G + its node) x E: + an expert = a (unit, expert) key
    node_key: torch.Tensor  # [R] the slot's node x E: + an expert = a (node, expert) key
    expert_group: torch.Tensor  # [E] each expert's group (of `groups`)
    unit_cell: torch.Tensor  # [2, L, R] (layer, the slot's GPU / G + its node) in a [L, G + N] grid
    excluded: torch.Tensor  # [K, L, K] 1 - identity: group j is not group i


@functools.lru_cache(maxsize=16)
def _layout(shape: Shape, groups: int) -> _Layout:
    """The shape's index tensors (never written to: shared by every call)."""
    slots, units = shape.num_replicas, shape.num_gpus + shape.num_nodes
    slot_gpu = torch.arange(slots) // (slots // shape.num_gpus)
    slot_unit = torch.stack([slot_gpu, shape.num_gpus + slot_gpu // (shape.num_gpus // shape.num_nodes)])
    layer = torch.arange(shape.num_layers).unsqueeze(-1) * units
    excluded = 1 - torch.eye(groups, dtype=_F64).unsqueeze(1).expand(groups, shape.num_layers, groups)
    return _Layout((slot_unit * shape.num_experts).unsqueeze(1), (slot_unit[1] - shape.num_gpus) * shape.num_experts,
                   torch.arange(shape.num_experts) // (shape.num_experts // groups),
                   layer + slot_unit.unsqueeze(1), excluded)


def _touch(share: torch.Tensor, phy2log: torch.Tensor, shape: Shape,
           costs: DeploymentCosts) -> tuple[torch.Tensor, torch.Tensor]:
    """`touch_probabilities` from `share` [L, R]: a token's expected copies on each slot.

    Per (group, layer, unit) tensors are [K, L, U], the units being the G GPUs, then the N nodes;
    per-slot values come in pairs [2, L, R]: as seen by the slot's GPU, and by its node.
    """
    groups, chosen = _routing_groups(shape, costs)
    layout = _layout(shape, groups)
    num_layers, num_units = shape.num_layers, shape.num_gpus + shape.num_nodes
    slot_group = layout.expert_group.take(phy2log)
    cell = (slot_group * (num_layers * num_units) + layout.unit_cell).flatten()

    def by_unit(values: torch.Tensor) -> torch.Tensor:
        """[K, L, U]: per-slot values [2, L, R] summed by (the slot's group, layer, GPU / node)."""
        summed = torch.zeros(groups * num_layers * num_units, dtype=_F64)
        return summed.scatter_add_(0, cell, values.flatten()).view(groups, num_layers, num_units)

    expected = by_unit(share.expand(2, -1, -1))  # a token's expected copies from group j on unit u
    group_load = expected[..., :shape.num_gpus].sum(-1)
    # Subsets of groups weigh the product of their loads relative to the mean group (the floor
    # keeps a layer with fewer loaded groups than a token picks well defined).
    mean_group = costs.experts_per_token / groups
    weight = (group_load + 1e-9 * mean_group) / mean_group
    picked = (1 - _subset_mean(weight, layout.excluded, chosen).T).clamp_min(_TINY)  # [K, L]: P(group j picked)
    draws = group_load / picked  # experts a picked group supplies, on average
    # Given its group picked, expert e is chosen with c = p_e / P(picked) and its copy goes to one
    # of its replicas alike: unit u misses it with 1 - c x (e's copies on u) / logcnt. Items (an
    # expert on a node; a slot on a GPU, where an expert rarely has two copies) are taken as
    # independent, then corrected for the group supplying a fixed number d of experts: the
    # with-replacement view of d draws, (1 - m/d)^d e^m for the unit's expected copies m, less
    # that factor for each item alone (so a lone item keeps its exact 1 - c).
    chance = (share / picked.T.gather(1, slot_group)).clamp_max_(1)
    node_key = layout.node_key + phy2log
    node_copies = _count(node_key, node_key, shape.num_nodes * shape.num_experts)
    chance = torch.stack([chance, (chance * node_copies).clamp_max_(1)])
    alone = torch.log1p(-chance) - _fixed_count(chance, draws.T.gather(1, slot_group))
    alone[1] /= node_copies  # an expert's copies on a node share its one item
    missed = by_unit(alone) + _fixed_count(expected / picked.unsqueeze(-1), draws.unsqueeze(-1))
    touch = 1 - _subset_mean(weight, torch.exp(missed.clamp_max(0)), chosen)
    return touch[..., shape.num_gpus:], touch[..., :shape.num_gpus]


def _fixed_count(mass: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """log((1 - m/d)^d e^m): how much likelier `draws` draws with replacement miss a set holding
    `mass` of them than independent items (e^-m) do; -> -inf (a certain hit) as m -> d."""
    return torch.log1p(-(mass / draws.clamp_min(_TINY)).clamp_max(1 - 1e-12)) * draws + mass


def _count(placed: torch.Tensor, looked_up: torch.Tensor, num_keys: int) -> torch.Tensor:
    """[L, X] int16: how many of `placed` [L, Y] (unit, expert) keys equal each of `looked_up`,
    layer by layer: one table of unit x expert counts per layer."""
    counts = torch.zeros(placed.shape[0], num_keys, dtype=torch.int16)
    counts.scatter_add_(1, placed, torch.ones_like(placed, dtype=torch.int16))
    return counts.gather(1, looked_up)


def _subset_mean(weight: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    """[L, U]: E[prod_{j in S} values[j, l, u]] over `size`-subsets S of the K groups with
    P(S) proportional to prod_{j in S} weight[j, l].

    The ratio of two elementary symmetric polynomials of degree `size` (of weight x values and of
    weight), built group by group (e_m += term x e_(m-1)): no subset is enumerated.
    """
    terms = torch.cat([weight.unsqueeze(-1) * values, weight.unsqueeze(-1)], -1)  # last column: the normaliser
    sums = [terms[0].clone()]  # sums[i]: e_(i+1) of the groups so far
    for term in terms[1:]:
        top = len(sums)
        if top < size:
            sums.append(sums[-1] * term)
        for degree in range(top - 1, 0, -1):
            sums[degree].addcmul_(sums[degree - 1], term)
        sums[0].add_(term)
    return sums[size - 1][..., :-1] / sums[size - 1][..., -1:]


# -- migration -------------------------------------------------------------------------------------

def migration(phy2log: torch.Tensor, previous_phy2log: torch.Tensor | None, shape: Shape,
              costs: DeploymentCosts) -> tuple[float, float]:
    """(seconds, migrated fraction) of re-placing `previous_phy2log` [L, R] by `phy2log`.

    A slot is migrated when its GPU did not hold its expert in the old placement; it then
    receives the weights over NVLink when another GPU of its node held the expert, else over its
    NIC. (A further copy of an expert its GPU already held is made in the GPU's own memory: free.)
    NVLink and NIC transfers run side by side; all layers move at the same rebalance, so the
    busiest GPU sets the time. The fraction is migrated slots over all R slots, mean over layers.
    """
    if previous_phy2log is None:
        return 0.0, 0.0
    num_layers, num_slots = phy2log.shape
    num_gpus = shape.num_gpus
    unit_key = _layout(shape, 1).unit_key
    held = _count((unit_key + previous_phy2log).transpose(0, 1).flatten(1),
                  (unit_key + phy2log).transpose(0, 1).flatten(1), (num_gpus + shape.num_nodes) * shape.num_experts)
    migrated, in_node = held[:, :num_slots] == 0, held[:, num_slots:] > 0
    over_nvlink = (migrated & in_node).view(num_layers, num_gpus, -1).sum((0, 2)).to(_F64)
    over_nic = (migrated & ~in_node).view(num_layers, num_gpus, -1).sum((0, 2)).to(_F64)
    weight_bytes = costs.expert_weight_bytes
    seconds = torch.maximum(over_nvlink * weight_bytes / costs.nvlink_bytes_per_s,
                            over_nic * weight_bytes / costs.internode_bytes_per_s).max().item()
    return seconds, migrated.sum().item() / (num_layers * num_slots)


# -- the exact reference ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulatedRouting:
    """Tokens routed one by one: their per-expert loads and exactly which nodes and GPUs each touched."""

    loads: torch.Tensor  # [L, E] int64 token-expert assignments
    node_touch: torch.Tensor  # [L, N] share of tokens with at least one expert copy on each node
    gpu_touch: torch.Tensor  # [L, G] share of tokens with at least one expert copy on each GPU


def simulate_routing(logits: torch.Tensor, num_tokens: int, phy2log: torch.Tensor, logcnt: torch.Tensor,
                     shape: Shape, costs: DeploymentCosts, generator: torch.Generator) -> SimulatedRouting:
    """Route `num_tokens` tokens per layer as DeepSeek-V3's router does, with per-token scores
    `logits` [L, E] + Gumbel noise: groups ranked by the sum of their two best scores, the best
    `groups_per_token` kept, the top-k experts among them; each expert copy goes to one of the
    expert's replicas uniformly. The reference `touch_probabilities` is measured against (its
    loads are the simulated tokens' own, so the two see the same window). Memory ~ tokens x L x E.
    """
    num_layers, num_experts = logits.shape
    groups, chosen = _routing_groups(shape, costs)
    k = costs.experts_per_token
    uniform = torch.rand(num_tokens, num_layers, num_experts, generator=generator, dtype=_F64)
    scores = logits.to(_F64) - torch.log(-torch.log(uniform.clamp_min(1e-300)))
    if chosen < groups:
        by_group = scores.view(num_tokens, num_layers, groups, num_experts // groups)
        group_score = by_group.topk(min(2, num_experts // groups), -1).values.sum(-1)
        keep = torch.zeros_like(group_score, dtype=torch.bool).scatter_(-1, group_score.topk(chosen, -1).indices, True)
        scores = scores.masked_fill(~keep.repeat_interleave(num_experts // groups, -1), -math.inf)
    experts = scores.topk(k, -1).indices  # [T, L, k]
    loads = torch.zeros(num_layers, num_experts, dtype=torch.int64).scatter_add_(
        1, experts.transpose(0, 1).reshape(num_layers, -1), torch.ones(num_layers, num_tokens * k, dtype=torch.int64))
    slot = _pick_replicas(experts, phy2log, logcnt, generator)
    gpu = slot // (phy2log.shape[1] // shape.num_gpus)
    node = gpu // (shape.num_gpus // shape.num_nodes)
    return SimulatedRouting(loads, _touched_share(node, shape.num_nodes), _touched_share(gpu, shape.num_gpus))


def _pick_replicas(experts: torch.Tensor, phy2log: torch.Tensor, logcnt: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """[T, L, k] slot of each expert copy: one of the expert's replicas, uniformly at random."""
    num_tokens = experts.shape[0]
    by_expert = torch.sort(phy2log, dim=-1, stable=True).indices  # slots grouped by expert
    first = (logcnt.cumsum(-1) - logcnt).unsqueeze(0).expand(num_tokens, -1, -1).gather(-1, experts)
    count = logcnt.unsqueeze(0).expand(num_tokens, -1, -1).gather(-1, experts)
    offset = (torch.rand(experts.shape, generator=generator, dtype=_F64) * count).long()
    return by_expert.unsqueeze(0).expand(num_tokens, -1, -1).gather(-1, first + offset)


def _touched_share(unit: torch.Tensor, num_units: int) -> torch.Tensor:
    """[L, U] share of tokens with at least one copy on each unit, from `unit` [T, L, k]."""
    num_tokens, num_layers, _ = unit.shape
    touched = torch.zeros(num_tokens, num_layers, num_units, dtype=_F64).scatter_(-1, unit, 1.0)
    return touched.mean(0)
