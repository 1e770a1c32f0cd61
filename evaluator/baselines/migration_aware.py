"""A migration-aware, node-aware EPLB baseline: experts stay on their GPU unless moving pays for itself.

The seed and forecast_lpt re-place every window, moving 82-98% of the slots (a DS-V3 expert is
~44 MB). This program changes the placement in force only where that buys more balance than its
copies cost, and keeps expert groups on their node. Each part was kept because it raised the cost
model's efficiency (evaluator/scoring/cost_model.py) on the `default` suite; see
bench/bench_migration_aware.py.

* Forecast (simpler than forecast_lpt's Kalman filter): per layer, in centred log loads, a level
  plus a drift fading by RHO a window; an error moves the level by LEVEL_GAIN / (windows +
  LEVEL_PRIOR) of it, the drift by DRIFT_GAIN; a first window is its own forecast; a layer whose
  squared error passes SHIFT_TEST x its running mean shifted, and its drift takes the error whole.
  The Kalman filter instead: +0.001-0.003 balance on DS-V3, none on Qwen3. History is kept per
  deployment, restarted by a window uncorrelated with the forecast (the reversed warm-up).
* Nothing in force, or a restarted history: D'Hondt counts and LPT in rounds. Otherwise from the
  placement in force (`old_global_expert_indices`, else the last one returned): D'Hondt counts,
  a change re-using a slot of an expert that lost a replica. Then swaps: each round the heaviest
  GPUs take the best swap of a slot with one on the lightest GPUs if it lowers the soft maximum
  tau log sum exp(load / tau) (tau = TEMPERATURE x mean GPU load) by more than two copies at
  PRICE_NVLINK within a node, PRICE_NIC across (the cost model's 160 and 50 GB/s). Prices are in
  mean GPU loads of a layer (a DS-V3 expert over the NIC spread over 32 GPUs ~ 0.002 of a layer's
  compute in a window); efficiency is flat within 0.001 from 0.4x to 1x them, lower at 2x; at
  0.6x Qwen3-235B moves 20% of its slots. A soft maximum because the next window's busiest GPU is
  rarely the forecast's (decode: ~20th of 144); the maximum stalled. An unchanged window moves
  nothing: placements from scratch get the same swaps.
* Node-aware when num_groups % num_nodes == 0 (DS-V3 prefill): a group's replicas stay on its home
  node (DeepSeek's hierarchical policy), counts are per node, swaps stay in a node; two groups
  trade homes when evening node loads pays, at NODE_WEIGHT x the compute gain since a node's load
  also paces its NIC (1x: balance -0.006, efficiency -0.002).

Balance given up: on DS-V3 prefill node-aware placements re-placed every window reach 0.812,
forecast_lpt (global: 3.61 nodes per token) 0.829, this one 0.804 (3.15); on decode the last 0.01
takes over 20% of the slots a window. Dropped: replicas leaving their group's node (+0.017 prefill
balance, +0.12 nodes per token, efficiency -0.004); a variance-aware soft maximum (decode -0.003);
LPT re-packing heavy with light GPUs (more moves); a heavy GPU paired with the lightest only
(stalls at 2 slots per GPU); a first forecast of load ** 0.9 (an unchanged window then moved
experts); sticky counts (noise). Standalone (torch only); reset_memory() acts as a fresh process.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Forecast: the load model, per layer in centred natural logs (module docstring).
RHO = 0.85  # window-to-window persistence of an expert's drift
DRIFT_GAIN = 0.55  # share of a forecast error taken into the drift
LEVEL_GAIN = 0.5  # share of a forecast error taken into the level, over (windows + LEVEL_PRIOR)
LEVEL_PRIOR = 0.3
SHIFT_TEST = 4.0  # a layer shifted when its mean squared error exceeds this x its running average
SURPRISE_AVERAGING = 0.2  # weight of a window in that running average
RESET_CORRELATION = 0.5  # below this correlation with the forecast, a window restarts the history
LOG_FLOOR = 1e-6  # relative load added before the log, so that idle experts stay finite
MAX_DEPLOYMENTS = 16  # histories kept at once (oldest dropped first)

# Placement (module docstring); prices and gains in mean GPU loads of one layer.
TEMPERATURE = 0.02  # soft maximum's temperature, x the mean GPU load
PRICE_NVLINK = 0.0005  # price of one expert copy within a node
PRICE_NIC = 0.0016  # price of one expert copy across nodes
NODE_WEIGHT = 3.0  # a node's load evening is worth this x its compute gain (NIC time too)
HEAVY_SHARE = 16  # global policy: one GPU in this many takes a swap per round
CANDIDATES = 800  # (heavy slot, partner slot) pairs per layer and round, at most about
MAX_ROUNDS = 64


def _centred_logs(weight: torch.Tensor) -> torch.Tensor:
    """[L, E] float64 log loads, centred per layer; scale-free; NaN/negative count as 0, +inf as the largest float."""
    load = weight.detach().to("cpu", torch.float64)
    load = torch.nan_to_num(load, nan=0.0, posinf=torch.finfo(torch.float64).max, neginf=0.0).clamp_(min=0.0)
    peak = load.amax(-1, keepdim=True)
    logs = torch.log(load / torch.where(peak > 0, peak, torch.ones_like(peak)) + LOG_FLOOR)
    return logs - logs.mean(-1, keepdim=True)


@dataclass
class _History:
    """One deployment's memory: per-expert level and drift, per-layer squared error, the last placement."""

    level: torch.Tensor  # [L, E]
    drift: torch.Tensor  # [L, E]
    surprise: torch.Tensor  # [L] running mean squared forecast error; +inf until the second window
    windows: int = 1
    placement: torch.Tensor | None = None  # the last phy2log returned

    def forecast(self) -> torch.Tensor:
        """[L, E] forecast centred log loads of the next window."""
        return self.level + RHO * self.drift

    def follows(self, logs: torch.Tensor) -> bool:
        """Whether a window continues this history (its logs correlate with the forecast)."""
        pair = torch.stack([self.forecast().flatten(), logs.flatten()])
        return logs.numel() > 1 and bool(torch.corrcoef(pair)[0, 1] > RESET_CORRELATION)

    def update(self, logs: torch.Tensor) -> None:
        error = logs - self.forecast()
        power = error.square().mean(-1)
        shifted = power > SHIFT_TEST * self.surprise
        blended = (1 - SURPRISE_AVERAGING) * self.surprise + SURPRISE_AVERAGING * power
        self.surprise = torch.where(torch.isinf(self.surprise), power, torch.where(shifted, self.surprise, blended))
        level_gain = torch.where(shifted, 0.0, LEVEL_GAIN / (self.windows + 1 + LEVEL_PRIOR))
        self.level = self.level + level_gain.unsqueeze(-1) * error
        self.drift = RHO * self.drift + torch.where(shifted, 1.0, DRIFT_GAIN).unsqueeze(-1) * error
        self.windows += 1


_MEMORY: dict[tuple[int, ...], _History] = {}


def reset_memory() -> None:
    """Forget every deployment: the next call behaves as in a fresh process."""
    _MEMORY.clear()


def _remember(logs: torch.Tensor, key: tuple[int, ...]) -> tuple[_History, bool]:
    """This deployment's history with the window taken in, and whether the window continued it."""
    history = _MEMORY.get(key)
    if history is not None and history.follows(logs):
        history.update(logs)
        return history, True
    _MEMORY.pop(key, None)
    while len(_MEMORY) >= MAX_DEPLOYMENTS:
        _MEMORY.pop(next(iter(_MEMORY)))  # the oldest deployment
    history = _MEMORY[key] = _History(logs, torch.zeros_like(logs), torch.full(logs.shape[:1], float("inf")))
    return history, False


@dataclass(frozen=True)
class _Layout:
    """The deployment: L x E experts on R slots, G GPUs in N nodes; `homes` nodes keep groups (1: global)."""

    num_layers: int
    num_experts: int
    num_replicas: int
    num_gpus: int
    num_nodes: int
    homes: int
    num_groups: int
    per_gpu: int  # R / G
    gpus_per_home: int  # G / homes


def _dhondt(load: torch.Tensor, num_replicas: int) -> torch.Tensor:
    """[X, n] replica counts: each extra replica to the largest load per replica (the top quotients load / k)."""
    rows, items = load.shape
    extra = num_replicas - items
    counts = torch.ones(rows, items, dtype=torch.int64)
    if extra == 0:
        return counts
    quotients = load.unsqueeze(-1) / torch.arange(1, extra + 1, dtype=load.dtype)
    chosen = quotients.flatten(1).topk(extra, dim=-1).indices // extra
    return counts.scatter_add_(1, chosen, torch.ones_like(chosen))


def _experts_by_home(homes: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """[L, N * E/N]: the experts of home node 0, then node 1, ... (each home holds E/N of them)."""
    return torch.argsort(homes * layout.num_experts + torch.arange(layout.num_experts), dim=-1)


def _replica_counts(forecast: torch.Tensor, homes: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """[L, E] D'Hondt counts, per home node over its R/N slots."""
    experts = _experts_by_home(homes, layout)
    node_load = forecast.gather(1, experts).view(layout.num_layers * layout.homes, -1)
    counts = _dhondt(node_load, layout.num_replicas // layout.homes).view(layout.num_layers, -1)
    return torch.empty_like(counts).scatter_(1, experts, counts)


def _lpt(item_load: torch.Tensor, bins: int) -> torch.Tensor:
    """[X, n] position (bin * n/bins + rank) of each item: round r gives the r-th `bins` heaviest items to the bins,
    the heaviest to the lightest bin."""
    rows, items = item_load.shape
    per_bin = items // bins
    ranked, order = item_load.sort(-1, descending=True)
    bin_load = torch.zeros(rows, bins, dtype=item_load.dtype)
    position = torch.empty_like(order)
    for rnd in range(per_bin):
        lightest = bin_load.argsort(-1)
        part = slice(rnd * bins, (rnd + 1) * bins)
        position[:, part] = lightest * per_bin + rnd
        bin_load.scatter_add_(1, lightest, ranked[:, part])
    return torch.empty_like(position).scatter_(1, order, position)


def _fresh_homes(forecast: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """[L, E] home node of each expert: groups packed onto nodes by LPT of their forecast loads."""
    group_load = forecast.view(layout.num_layers, layout.num_groups, -1).sum(-1)
    node = _lpt(group_load, layout.homes) // (layout.num_groups // layout.homes)
    return node.repeat_interleave(layout.num_experts // layout.num_groups, 1)


def _fresh(forecast: torch.Tensor, counts: torch.Tensor, homes: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """[L, R] placement from scratch: each home node's replicas onto its GPUs by LPT."""
    rows = layout.num_layers * layout.homes
    experts = _experts_by_home(homes, layout)
    node_counts = counts.gather(1, experts).view(rows, -1)
    local = torch.arange(node_counts.shape[1]).repeat(rows).repeat_interleave(node_counts.flatten()).view(rows, -1)
    load = (forecast.gather(1, experts).view(rows, -1) / node_counts).gather(1, local)
    slot = _lpt(load, layout.gpus_per_home)
    node_slots = torch.empty_like(local).scatter_(1, slot, local)
    return experts.view(rows, -1).gather(1, node_slots).view(layout.num_layers, -1)


def _homes(placement: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """[L, E] home node of each expert: groups go, most-held first, to the node holding most of their slots."""
    nodes, groups = layout.homes, layout.num_groups
    slot_node = torch.arange(layout.num_replicas) // (layout.num_replicas // nodes)
    held = torch.zeros(layout.num_layers, groups * nodes, dtype=torch.float64)
    held.scatter_add_(1, placement // (layout.num_experts // groups) * nodes + slot_node,
                      torch.ones_like(placement, dtype=torch.float64))
    held = held.view(-1, groups, nodes)
    home = torch.empty(layout.num_layers, groups, dtype=torch.int64)
    room = torch.full((layout.num_layers, nodes), groups // nodes)
    rows = torch.arange(layout.num_layers)
    for _ in range(groups):
        best = held.flatten(1).argmax(-1)
        group, node = best // nodes, best % nodes
        home[rows, group] = node
        room[rows, node] -= 1
        held[rows, group] = -1.0
        held.masked_fill_((room == 0).unsqueeze(1), -1.0)
    return home.repeat_interleave(layout.num_experts // groups, 1)


def _soft_weights(load: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """[L, U] each unit's share of the soft-max sum sum_u exp(load_u / tau)."""
    weight = torch.exp(((load - load.amax(-1, keepdim=True)) / tau).clamp(min=-600))
    return weight / weight.sum(-1, keepdim=True)


def _relief(weight_a: torch.Tensor, weight_b: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Share of the soft-max sum removed when unit a hands load d to unit b, up = e^(d/tau) (exact).

    A move lowers the soft maximum tau log(sum) by more than `price` past relief 1 - e^(-price/tau).
    """
    return weight_a * (1 - 1 / up) + weight_b * (1 - up)


def _regroup(placement: torch.Tensor, forecast: torch.Tensor, homes: torch.Tensor,
             layout: _Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """(placement, homes) with, per layer, two groups of different nodes trading homes where evening the
    node loads pays for every slot of both changing expert. The experts are relabelled rank for rank
    (heaviest with heaviest), so GPU loads change little; re-count and swaps fix the rest."""
    num_layers, groups, nodes = layout.num_layers, layout.num_groups, layout.homes
    size = layout.num_experts // groups
    group_load = forecast.view(num_layers, groups, size).sum(-1)
    group_node = homes[:, ::size]
    node_load = torch.zeros(num_layers, nodes, dtype=forecast.dtype).scatter_add_(1, group_node, group_load)
    slots = torch.zeros(num_layers, groups, dtype=forecast.dtype).scatter_add_(
        1, placement // size, torch.ones_like(placement, dtype=forecast.dtype))
    tau = TEMPERATURE * node_load.mean(-1, keepdim=True)
    weight = _soft_weights(node_load, tau)
    at = weight.gather(1, group_node)
    # Group x (node A) and y (node B) trade homes: load_x - load_y moves from A to B.
    up = torch.exp(((group_load.unsqueeze(-1) - group_load.unsqueeze(-2)) / tau.unsqueeze(-1)).clamp(-300, 300))
    price = PRICE_NIC * (slots.unsqueeze(-1) + slots.unsqueeze(-2)) * node_load.mean(-1).view(-1, 1, 1) / NODE_WEIGHT
    net = _relief(at.unsqueeze(-1), at.unsqueeze(-2), up) + torch.expm1(-price / tau.unsqueeze(-1))
    best, pick = net.masked_fill(group_node.unsqueeze(-1) == group_node.unsqueeze(-2), -1.0).flatten(1).max(-1)
    trade = (best > 0).unsqueeze(-1)
    if not trade.any():
        return placement, homes
    rows = torch.arange(num_layers)
    ranked = forecast.view(num_layers, groups, size).argsort(-1, descending=True) + \
        (torch.arange(groups) * size).view(1, -1, 1)
    x, y = ranked[rows, pick // groups], ranked[rows, pick % groups]
    relabel = torch.arange(layout.num_experts).repeat(num_layers, 1)
    relabel.scatter_(1, x, torch.where(trade, y, x)).scatter_(1, y, torch.where(trade, x, y))
    placement = relabel.gather(1, placement)
    return placement, _homes(placement, layout)


def _recount(placement: torch.Tensor, forecast: torch.Tensor, counts: torch.Tensor, homes: torch.Tensor,
             layout: _Layout) -> torch.Tensor:
    """The placement with each expert's replica count brought to `counts`, one slot per change.

    An expert with too many replicas keeps those on the lightest GPUs; the freed slots take the
    missing replicas, node by node, heaviest replica into the slot on the lightest GPU.
    """
    old = torch.zeros_like(counts).scatter_add_(1, placement, torch.ones_like(placement))
    if torch.equal(old, counts):
        return placement
    num_layers, num_replicas = placement.shape
    gpu_load = (forecast / counts).gather(1, placement).view(num_layers, layout.num_gpus, -1).sum(-1)
    slot_load = gpu_load.repeat_interleave(layout.per_gpu, 1)
    slot_node = torch.arange(num_replicas) // (num_replicas // layout.homes)
    order = slot_load.argsort(dim=-1, stable=True)
    order = order.gather(1, placement.gather(1, order).argsort(dim=-1, stable=True))  # by expert, then GPU load
    first = (old.cumsum(-1) - old).gather(1, placement.gather(1, order))
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(num_replicas) - first)
    freed = rank >= counts.gather(1, placement)
    missing = (counts - old).clamp(min=0)
    width = int(missing.sum(-1).max())
    new = torch.searchsorted(missing.cumsum(-1), torch.arange(width).repeat(num_layers, 1), right=True)
    valid = new < layout.num_experts
    new = new.clamp(max=layout.num_experts - 1)
    new_key = torch.where(valid, homes.gather(1, new) - (forecast / counts).gather(1, new) / 2, float("inf"))
    new_order = new_key.argsort(-1)
    new, valid = new.gather(1, new_order), valid.gather(1, new_order)
    slot_key = torch.where(freed, slot_node + slot_load / (2 * slot_load.amax(-1, keepdim=True) + 1e-300),
                           float("inf"))
    target = slot_key.argsort(-1)[:, :width]
    return placement.clone().scatter_(1, target, torch.where(valid, new, placement.gather(1, target)))


@dataclass
class _Search:
    """The swap search's state: the placement, each slot's forecast load, and per-layer constants."""

    placement: torch.Tensor  # [L, R]
    share: torch.Tensor  # [L, R] forecast load of each slot
    grow: torch.Tensor  # [L, R] exp(share / tau), shifted per layer: a swap's factor on a GPU's soft-max term
    gpu_load: torch.Tensor  # [L, G]
    tau: torch.Tensor  # [L, 1]
    threshold: torch.Tensor  # [L, 2] relief of the soft-max sum a swap must exceed: within a node, across

    def rows(self, layers: torch.Tensor) -> _Search:
        """The state of some layers (copies)."""
        return _Search(*(getattr(self, f)[layers] for f in self.__dataclass_fields__))

    def put(self, layers: torch.Tensor, part: _Search) -> None:
        for name in ("placement", "share", "grow", "gpu_load"):
            getattr(self, name)[layers] = getattr(part, name)


def _improve(placement: torch.Tensor, forecast: torch.Tensor, counts: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """The placement after rounds of paying swaps (module docstring), each over the layers that swapped in
    the round before: most layers settle in a few rounds, a few take twenty."""
    share = (forecast / counts).gather(1, placement)
    mean = share.sum(-1, keepdim=True) / layout.num_gpus
    tau = TEMPERATURE * mean
    grow = torch.exp(((share - mean / 2) / tau).clamp(-300, 300))
    gpu_load = share.view(layout.num_layers, layout.num_gpus, -1).sum(-1)
    price = 2 * torch.tensor([PRICE_NVLINK, PRICE_NIC], dtype=share.dtype) * mean
    search = _Search(placement.clone(), share, grow, gpu_load, tau, -torch.expm1(-price / tau))
    active = torch.arange(layout.num_layers)
    for _ in range(MAX_ROUNDS):
        part = search.rows(active)
        swapped = _swap_round(part, *_pairs(part.gpu_load, layout), layout)
        search.put(active, part)
        active = active[swapped]
        if len(active) == 0:
            break
    return search.placement


def _pairs(gpu_load: torch.Tensor, layout: _Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """(heavy [L, k], partners [L, k, m]) of a round. Global: the G / HEAVY_SHARE heaviest GPUs, each with
    the lightest GPUs. Node-aware: each home node's heaviest GPU with that node's lightest."""
    num_layers = gpu_load.shape[0]
    per_home = layout.gpus_per_home
    k = max(1, layout.num_gpus // HEAVY_SHARE) if layout.homes == 1 else 1
    m = max(1, min(per_home - k, CANDIDATES // (k * layout.homes * layout.per_gpu ** 2)))
    load = gpu_load.view(num_layers, layout.homes, per_home)
    offset = (torch.arange(layout.homes) * per_home).view(1, -1, 1)
    heavy = (load.topk(k, -1).indices + offset).view(num_layers, -1)
    light = load.topk(m, -1, largest=False).indices + offset
    return heavy, light.unsqueeze(2).expand(-1, -1, k, -1).reshape(num_layers, -1, m)


def _swap_round(search: _Search, heavy: torch.Tensor, partners: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """Each heavy GPU's best swap of a slot with one on its partner GPUs, where it pays; [L] whether a layer
    swapped. Swaps of a round touch distinct GPUs and experts, so their reliefs add up."""
    num_layers, per_gpu = heavy.shape[0], layout.per_gpu
    k, m = partners.shape[1:]
    heavy_slots = (heavy.unsqueeze(-1) * per_gpu + torch.arange(per_gpu)).view(num_layers, -1)  # [L, kS]
    partner_slots = (partners.unsqueeze(-1) * per_gpu + torch.arange(per_gpu)).reshape(num_layers, -1)  # [L, kmS]
    weight = _soft_weights(search.gpu_load, search.tau)
    heavy_weight = weight.gather(1, heavy).view(num_layers, k, 1, 1, 1)
    partner_weight = weight.gather(1, partners.reshape(num_layers, -1)).view(num_layers, k, 1, m, 1)
    up = search.grow.gather(1, heavy_slots).view(num_layers, k, per_gpu, 1, 1) / \
        search.grow.gather(1, partner_slots).view(num_layers, k, 1, m, per_gpu)
    relief = _relief(heavy_weight, partner_weight, up)
    node = lambda gpus: gpus // (layout.num_gpus // layout.num_nodes)  # noqa: E731
    across = (node(heavy).unsqueeze(-1) != node(partners)).long().reshape(num_layers, -1)
    threshold = search.threshold.gather(1, across).view(num_layers, k, 1, m, 1)
    best, pick = (relief - threshold).flatten(2).max(-1)
    a = heavy_slots.view(num_layers, k, per_gpu).gather(2, (pick // (m * per_gpu)).unsqueeze(-1)).squeeze(-1)
    b = partner_slots.view(num_layers, k, -1).gather(2, (pick % (m * per_gpu)).unsqueeze(-1)).squeeze(-1)
    done = best > 0
    if k > 1:
        done &= ~_clashes(search.placement, a, b, done, per_gpu)
    b = torch.where(done, b, a)  # an undone swap writes its own slot back: no clash with a done one
    delta = search.share.gather(1, b) - search.share.gather(1, a)
    search.gpu_load.scatter_add_(1, a // per_gpu, delta).scatter_add_(1, b // per_gpu, -delta)
    for tensor in (search.placement, search.share, search.grow):
        at_a, at_b = tensor.gather(1, a), tensor.gather(1, b)
        tensor.scatter_(1, a, at_b).scatter_(1, b, at_a)
    return done.any(-1)


def _clashes(placement: torch.Tensor, a: torch.Tensor, b: torch.Tensor, done: torch.Tensor,
             per_gpu: int) -> torch.Tensor:
    """[L, k] swaps sharing a partner GPU or an expert with an earlier (heavier) done swap of the round."""
    ids = torch.stack([placement.gather(1, a), placement.gather(1, b), -1 - b // per_gpu], -1)  # GPUs < 0 <= experts
    clash = (ids.unsqueeze(2).unsqueeze(-1) == ids.unsqueeze(1).unsqueeze(-2)).flatten(3).any(-1)
    return (clash & torch.ones_like(clash[0], dtype=torch.bool).tril(-1) & done.unsqueeze(-2)).any(-1)


def _outputs(phy2log: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(phy2log, log2phy [L, E, R-E+1] with each expert's slots in increasing order, logcnt), all from phy2log."""
    num_layers, num_replicas = phy2log.shape
    logcnt = torch.zeros(num_layers, num_experts, dtype=torch.int64).scatter_add_(1, phy2log, torch.ones_like(phy2log))
    slots = torch.sort(phy2log, dim=-1, stable=True).indices
    experts = phy2log.gather(-1, slots)
    rank = torch.arange(num_replicas) - (logcnt.cumsum(-1) - logcnt).gather(-1, experts)
    width = num_replicas - num_experts + 1
    log2phy = torch.full((num_layers, num_experts * width), -1, dtype=torch.int64)
    log2phy.scatter_(-1, experts * width + rank, slots)
    return phy2log, log2phy.view(num_layers, num_experts, width), logcnt


def _in_force(old: torch.Tensor | None, history: _History, layout: _Layout) -> torch.Tensor | None:
    """The placement in force: the caller's when given (checked), else the last one returned here."""
    if old is None:
        return history.placement
    old = old.detach().to("cpu", torch.int64)
    if old.shape != (layout.num_layers, layout.num_replicas) or old.min() < 0 or old.max() >= layout.num_experts:
        raise ValueError(f"old_global_expert_indices must be [{layout.num_layers}, {layout.num_replicas}] expert ids "
                         f"in [0, {layout.num_experts}), got shape {tuple(old.shape)}")
    return old


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int,
                      old_global_expert_indices: torch.Tensor | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(phy2log [L, R], log2phy [L, E, R-E+1], logcnt [L, E]), int64 on the CPU. `old_global_expert_indices`
    (vLLM's name): the placement in force [L, R]; None: the one last returned for this deployment."""
    if weight.dim() != 2:
        raise ValueError(f"weight must be [layers, experts], got shape {tuple(weight.shape)}")
    num_layers, num_experts = weight.shape
    if num_replicas < num_experts or num_gpus < 1 or num_replicas % num_gpus or num_gpus % num_nodes:
        raise ValueError(f"need experts <= num_replicas, num_gpus | num_replicas and num_nodes | num_gpus; got "
                         f"E={num_experts}, R={num_replicas}, G={num_gpus}, N={num_nodes}")
    home_nodes = num_nodes if num_groups % num_nodes == 0 and num_experts % num_groups == 0 else 1
    layout = _Layout(num_layers, num_experts, num_replicas, num_gpus, num_nodes, home_nodes, num_groups,
                     num_replicas // num_gpus, num_gpus // home_nodes)
    history, continues = _remember(_centred_logs(weight), (num_layers, num_experts, num_replicas, num_groups,
                                                           num_nodes, num_gpus))
    forecast = torch.softmax(history.forecast(), -1)  # each layer's forecast loads, summing to 1
    previous = _in_force(old_global_expert_indices, history, layout)
    if previous is None or not continues:
        homes = _fresh_homes(forecast, layout) if layout.homes > 1 else torch.zeros(forecast.shape, dtype=torch.int64)
        counts = _replica_counts(forecast, homes, layout)
        start = _fresh(forecast, counts, homes, layout)
    else:
        homes = torch.zeros(forecast.shape, dtype=torch.int64)
        if layout.homes > 1:
            previous, homes = _regroup(previous, forecast, _homes(previous, layout), layout)
        counts = _replica_counts(forecast, homes, layout)
        start = _recount(previous, forecast, counts, homes, layout)
    placement = history.placement = _improve(start, forecast, counts, layout)
    return _outputs(placement, num_experts)
