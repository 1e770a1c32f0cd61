"""A small library of EPLB moves for the offline proposer, written as SEARCH/REPLACE edits.

Each move is a known idea for expert placement, written against the seed program's code
(`seed_program/eplb.py`). A move applies to a program when every SEARCH text of it occurs there
exactly once (checked in order, each after the edits before it), so it applies to the seed and
to any descendant that left those lines alone. The moves touch different lines where they can,
so they compose: a child can carry several of them, and crossover can merge them. A move that
edits another move's code names it in `builds_on` and brings its edits along where it is missing.

State: the seed's entry point sits outside the EVOLVE block with a fixed signature, so it is never
given `old_global_expert_indices`; moves that need the placement in force remember the placement
they returned, in module-level dicts keyed by the call's shape and arguments (one entry per
deployment; the evaluator calls one process on consecutive windows, warm-up first).

What is scored: efficiency (ideal / modelled deployment time of a rebalance period: compute paced
by the busiest GPU, dispatch/combine traffic, expert migration from the placement in force;
docs/cost-model.md) x P/(P+t), P = 10 s. Measured on the `quick` suite (DeepSeek-V3 prefill 58 x
256, R=288, G=32, N=4, 8 groups, hierarchical; Qwen3-30B cut to 12 layers, one node), each child
made by `Move.apply` on the seed and all scored in one call on a shared 2-core machine:
`eplb-evolve compare seed_program/eplb.py CHILD... --suite quick --device cpu`.
Seed: efficiency 0.4425 (DeepSeek 0.459, Qwen3 0.426), combined 0.4388, balancedness 0.860,
86.6% of slots migrated a window, runtime 82 ms (normalised). Sweeps marked in-process ran the
same protocol without the sandbox (efficiency only).

* `vectorised_packing`: bit-identical placements, ~10x faster (7.4 ms): combined 0.4422.
* `global_policy`: balancedness 0.860 -> 0.868 (DeepSeek 0.801 -> 0.819), but a DeepSeek token
  touches 3.61 nodes instead of 3.15 and 96% of slots migrate instead of 91% (more over the
  NICs): efficiency 0.4236 (DeepSeek 0.421), combined 0.4202 (0.4231 with vectorised packing).
  Hence its low weight now.
* `swap_refinement` (after vectorised packing): balancedness 0.861, efficiency 0.4430, combined
  0.4425.
* `snake_placement`: 4.4 ms, balancedness 0.858, efficiency 0.4420, combined 0.4418.
* `shrink_loads`: efficiency 0.4427, combined 0.4392 at exponent 0.9 (noise on these loads; it
  helped balance on more skewed ones); its exponent is a constant the perturbation operator tunes.
* `keep_gpus_in_place`: balance and traffic exactly the seed's; migrated 86.6% -> 74.3%,
  migration 124 -> 83 ms a period: efficiency 0.4496, combined 0.4457. On the default suite's
  DeepSeek-V3 decode (144 GPUs, global policy: GPUs move across nodes, so traffic changes too,
  545 -> 518 ms) 97.6% -> 55.7% migrated, efficiency 0.212 -> 0.230 for +63 ms a call (in-process).
* `keep_layers_that_fit` (brings keep_gpus_in_place along; slack 0.15): migrated 19.4%, 38 ms,
  for balancedness 0.848: efficiency 0.4564, combined 0.4525 (slack 0.05: 0.4509, 0.1: 0.4540,
  0.2: 0.4569, 0.4: 0.4426, in-process). Per layer, not per node: migration is the busiest GPU's
  copies over all layers, which a node kept while the others move does not shorten (per node,
  slack 0.1: 0.4512).
* `smooth_loads` (memory 0.5): balancedness 0.863, migration 88 ms (group packs change nodes less
  often: more copies over NVLink): efficiency 0.4496, combined 0.4464 (memory 0.3: 0.4456, 0.7:
  0.4525 with balancedness 0.860, in-process).
* vectorised_packing + keep_layers_that_fit (+ keep_gpus_in_place) + smooth_loads: migrated 9.0%,
  17 ms, balancedness 0.843: efficiency 0.4588, combined 0.4584, +4.5% over the seed
  (evaluator/baselines/migration_aware.py, which repairs the placement in force swap by swap:
  efficiency 0.4679, combined 0.4675).
"""
from __future__ import annotations

from dataclasses import dataclass

Edit = tuple[str, str]


@dataclass(frozen=True)
class Move:
    """One idea: its name, why it should help, its prior weight in the mix, and its edits."""

    name: str
    description: str
    weight: float
    marker: str  # text only this move writes: its presence means the move is already there
    edits: tuple[Edit, ...]  # (search, replace), whole lines, applied in order
    builds_on: tuple[Move, ...] = ()  # moves whose code this one edits: brought along where absent

    def edits_for(self, code: str) -> tuple[Edit, ...] | None:
        """The edits that make this move in `code`: those of the moves it builds on that are not there yet,
        then its own; None when it is already there or a SEARCH text is absent or ambiguous."""
        made = self._made(code)
        return None if made is None else made[0]

    def apply(self, code: str) -> str | None:
        """The program with the move applied (and the moves it builds on), or None as for `edits_for`."""
        made = self._made(code)
        return None if made is None else made[1]

    def _made(self, code: str) -> tuple[tuple[Edit, ...], str] | None:
        """(edits, resulting program). Moves that insert code keep their SEARCH lines, hence the marker."""
        if self.marker in code:
            return None
        edits: tuple[Edit, ...] = ()
        for base in self.builds_on:
            made = base._made(code)
            if made is not None:
                edits, code = edits + made[0], made[1]
            elif base.marker not in code:
                return None
        for search, replace in self.edits:
            at_line_start = code.startswith(search) or f"\n{search}" in code
            if code.count(search) != 1 or not at_line_start:
                return None
            code = code.replace(search, replace)
        return edits + self.edits, code


_GLOBAL_POLICY = Move(
    name="global_policy",
    description=(
        "Always use the global policy: replicate all experts together and pack all replicas onto all "
        "GPUs. The hierarchical policy first packs whole expert groups onto nodes (two groups per node "
        "for DeepSeek-V3 on 4 nodes), a split too coarse to balance, and every GPU then inherits its "
        "node's imbalance. The price: a token's experts spread over more nodes, so more cross-node "
        "dispatch/combine traffic, and more experts move between nodes at each rebalance; the cost model "
        "charges both, and on DeepSeek-V3 they outweigh the balance gained."),
    weight=0.5,
    marker="# Balance over all GPUs at once",
    edits=((
        "    if num_groups % num_nodes == 0:\n"
        "        return rebalance_experts_hierarchical(weight, num_replicas, num_groups, num_nodes, num_gpus)\n"
        "    # Groups cannot be kept whole on nodes: treat everything as one group on one node.\n"
        "    return rebalance_experts_hierarchical(weight, num_replicas, 1, 1, num_gpus)\n",
        "    # Balance over all GPUs at once (one group, one node): keeping expert groups on one node\n"
        "    # forces a coarse node-level split whose imbalance every GPU of the node inherits.\n"
        "    return rebalance_experts_hierarchical(weight, num_replicas, 1, 1, num_gpus)\n"),),
)

_VECTORISED_PACKING = Move(
    name="vectorised_packing",
    description=(
        "Vectorise balanced_packing over rows: all rows place their next-heaviest item in the same step, "
        "so the Python loop runs over items only, not rows x items. Same greedy, same tie rules (stable "
        "sort, first lightest pack, float32 loads accumulated in the same order), so the placements are "
        "bit-identical, several times faster."),
    weight=3.0,
    marker="# All rows advance together, one item per step",
    edits=((
        "    pack_index = [[0] * num_items for _ in range(num_rows)]\n"
        "    rank_in_pack = [[0] * num_items for _ in range(num_rows)]\n"
        "    # A stable sort keeps equal loads in index order: that is the tie rule.\n"
        "    order = torch.sort(weight, dim=-1, descending=True, stable=True).indices\n"
        "    for row in range(num_rows):\n"
        "        pack_load = torch.zeros(num_packs, dtype=torch.float32)\n"
        "        pack_size = [0] * num_packs\n"
        "        for item in order[row].tolist():\n"
        "            # argmin returns the first minimum on ties; full packs are hidden behind +inf.\n"
        "            pack = int(torch.argmin(pack_load))\n"
        "            pack_index[row][item] = pack\n"
        "            rank_in_pack[row][item] = pack_size[pack]\n"
        "            pack_load[pack] += weight[row, item]\n"
        "            pack_size[pack] += 1\n"
        "            if pack_size[pack] == capacity:\n"
        "                pack_load[pack] = float(\"inf\")\n"
        "    return torch.tensor(pack_index), torch.tensor(rank_in_pack)\n",
        "    rows = torch.arange(num_rows)\n"
        "    pack_index = torch.empty(num_rows, num_items, dtype=torch.int64)\n"
        "    rank_in_pack = torch.empty(num_rows, num_items, dtype=torch.int64)\n"
        "    pack_load = torch.zeros(num_rows, num_packs, dtype=weight.dtype)\n"
        "    pack_size = torch.zeros(num_rows, num_packs, dtype=torch.int64)\n"
        "    # A stable sort keeps equal loads in index order: that is the tie rule.\n"
        "    order = torch.sort(weight, dim=-1, descending=True, stable=True).indices\n"
        "    # All rows advance together, one item per step: the Python loop runs over items only.\n"
        "    for item in order.t():\n"
        "        # argmin returns the first minimum on ties; full packs are hidden behind +inf.\n"
        "        pack = torch.argmin(pack_load, dim=-1)\n"
        "        pack_index[rows, item] = pack\n"
        "        rank_in_pack[rows, item] = pack_size[rows, pack]\n"
        "        pack_size[rows, pack] += 1\n"
        "        load = pack_load[rows, pack] + weight[rows, item]\n"
        "        pack_load[rows, pack] = torch.where(pack_size[rows, pack] == capacity, torch.inf, load)\n"
        "    return pack_index, rank_in_pack\n"),),
)

_SHRINK_LOADS = Move(
    name="shrink_loads",
    description=(
        "Hedge against forecast error: the placement is scored on the next window, where today's hottest "
        "experts tend to cool down and cold ones to warm up (regression to the mean). Raising loads to a "
        "power below 1 before replicating and packing shrinks them toward the layer's typical expert, "
        "so fewer slots bet on the current extremes. The exponent (0.9) is worth tuning."),
    weight=1.0,
    marker="# Forecast hedge:",
    edits=((
        "    weight = weight.detach().float().cpu()\n",
        "    weight = weight.detach().float().cpu()\n"
        "    # Forecast hedge: next window's loads regress toward the mean; shrink today's extremes.\n"
        "    weight = weight.clamp_min(0) ** 0.9\n"),),
)

_SWAP_REFINEMENT = Move(
    name="swap_refinement",
    description=(
        "After packing replicas onto GPUs, refine: in every layer, swap one replica of the most loaded GPU "
        "with one of the least loaded GPU, choosing the pair whose load difference is closest to half "
        "their gap, while that narrows the gap. The most loaded GPU never gets heavier. Vectorised over "
        "layers; only the two GPUs' replicas are compared."),
    weight=1.0,
    marker="def refine_packing(",
    edits=(
        ("def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:\n",
         "def refine_packing(weight: torch.Tensor, pack_index: torch.Tensor, rank_in_pack: torch.Tensor,\n"
         "                   num_packs: int, rounds: int = 16) -> tuple[torch.Tensor, torch.Tensor]:\n"
         "    \"\"\"Swap items between each row's heaviest and lightest pack while that narrows their gap.\"\"\"\n"
         "    num_rows, num_items = weight.shape\n"
         "    capacity = num_items // num_packs\n"
         "    rows = torch.arange(num_rows)\n"
         "    # members[r, p, k]: the item at rank k of pack p.\n"
         "    members = torch.empty(num_rows, num_items, dtype=torch.int64)\n"
         "    members.scatter_(1, pack_index * capacity + rank_in_pack, torch.arange(num_items).expand(num_rows, -1))\n"
         "    members = members.view(num_rows, num_packs, capacity)\n"
         "    for _ in range(rounds):\n"
         "        load = weight.gather(1, members.flatten(1)).view(num_rows, num_packs, capacity).sum(-1)\n"
         "        heavy, light = load.argmax(-1), load.argmin(-1)\n"
         "        gap = (load[rows, heavy] - load[rows, light]).view(-1, 1, 1)\n"
         "        delta = (weight.gather(1, members[rows, heavy]).unsqueeze(2)\n"
         "                 - weight.gather(1, members[rows, light]).unsqueeze(1))\n"
         "        useful = (delta > 0) & (delta < gap)\n"
         "        best, flat = torch.where(useful, (gap - 2 * delta).abs(), torch.inf).flatten(1).min(-1)\n"
         "        active = best < torch.inf\n"
         "        if not active.any():\n"
         "            break\n"
         "        r, i, j = rows[active], flat[active] // capacity, flat[active] % capacity\n"
         "        hot, cold = heavy[active], light[active]\n"
         "        moved = members[r, hot, i].clone()\n"
         "        members[r, hot, i] = members[r, cold, j]\n"
         "        members[r, cold, j] = moved\n"
         "    flat_members = members.flatten(1)\n"
         "    slot = torch.arange(num_items).expand(num_rows, -1)\n"
         "    pack_index = torch.empty_like(flat_members).scatter_(1, flat_members, slot // capacity)\n"
         "    rank_in_pack = torch.empty_like(flat_members).scatter_(1, flat_members, slot % capacity)\n"
         "    return pack_index, rank_in_pack\n"
         "\n"
         "\n"
         "def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:\n"),
        ("    slot_of_replica = gpu * slots_per_gpu + rank\n",
         "    gpu, rank = refine_packing(replica_load, gpu, rank, num_gpus // num_nodes)\n"
         "    slot_of_replica = gpu * slots_per_gpu + rank\n"),
    ),
)

_SNAKE_PLACEMENT = Move(
    name="snake_placement",
    description=(
        "Place replicas onto GPUs in snake (zig-zag) order instead of greedy packing: sort a node's "
        "replicas by load and deal them to GPUs 0..g-1, then g-1..0, and so on. One sort and two "
        "scatters, no Python loop; every GPU gets one replica from each load tier, heavy ones paired "
        "with light ones."),
    weight=0.5,
    marker="snake = torch.where(",
    edits=((
        "    gpu, rank = balanced_packing(replica_load, num_gpus // num_nodes)\n",
        "    gpus_per_node = num_gpus // num_nodes\n"
        "    order = torch.sort(replica_load, dim=-1, descending=True, stable=True).indices\n"
        "    position = torch.arange(slots_per_node)\n"
        "    lap, offset = position // gpus_per_node, position % gpus_per_node\n"
        "    snake = torch.where(lap % 2 == 0, offset, gpus_per_node - 1 - offset)\n"
        "    gpu = torch.empty_like(order).scatter_(-1, order, snake.expand_as(order))\n"
        "    rank = torch.empty_like(order).scatter_(-1, order, lap.expand_as(order))\n"),),
)

_KEEP_GPUS_IN_PLACE = Move(
    name="keep_gpus_in_place",
    description=(
        "Migrate fewer experts: at every rebalance a GPU must copy in (~44 MB per DeepSeek-V3 expert) each "
        "expert it did not hold under the placement in force. Which physical node takes which node-pack, and "
        "which GPU of a node takes which GPU-pack, is arbitrary: any relabelling keeps every GPU's load and "
        "which experts share a node or a GPU, so balance and traffic stay exactly. Remember the placement "
        "returned per deployment (the state is keyed by the call's shape and arguments; the entry point is "
        "not given the placement in force) and relabel each new placement to overlap the last one most: "
        "nodes first, then GPUs within matched nodes (greedy: mutually best pairs first), then keep each kept "
        "expert in its old slot."),
    weight=2.0,
    marker="_IN_FORCE: dict[",
    edits=(
        ("def rebalance_experts_hierarchical(\n",
         '''\
# The placement last returned for each deployment (shape and arguments): the placement in force at
# the next call, which the entry point is not given.
_IN_FORCE: dict[tuple[int, ...], torch.Tensor] = {}


def greedy_matching(overlap: torch.Tensor) -> torch.Tensor:
    """[X, n] the old unit of each new unit, from `overlap` [X, n, n] (new x old, whole counts): in rounds,
    all pairs that are each other's best among the units left are matched (the largest pair always is).
    A few rounds, not one per unit as for largest-pair-first; each round works on the rows with units left."""
    num_rows, n, _ = overlap.shape
    # Ties between whole counts go to the unit's own index, then to a fixed random order (few ties: few rounds).
    jitter = torch.rand(n, n, generator=torch.Generator().manual_seed(0))
    score = overlap + (torch.eye(n) + jitter) / 4
    old_of_new = torch.full((num_rows, n), -1)
    rows = torch.arange(num_rows)
    while len(rows):
        part, matched = score[rows], old_of_new[rows]
        best_old, best_new = part.argmax(-1), part.argmax(-2)
        mutual = (matched < 0) & (best_new.gather(1, best_old) == torch.arange(n))
        at, new = mutual.nonzero(as_tuple=True)
        old = best_old[at, new]
        matched[at, new] = old
        part[at, new, :] = -1
        part[at, :, old] = -1
        score[rows], old_of_new[rows] = part, matched
        rows = rows[(matched < 0).any(-1)]
    return old_of_new


def keep_slots(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Each row of `new` [X, S] reordered so that an expert `old` held in a slot stays in that slot."""
    kept = torch.full_like(new, -1)
    free = torch.ones_like(new, dtype=torch.bool)
    for slot in range(new.shape[1]):
        match = (new == old[:, slot:slot + 1]) & free
        rows = match.any(-1).nonzero().squeeze(-1)
        pick = match[rows].int().argmax(-1)  # the first free copy
        kept[rows, slot] = new[rows, pick]
        free[rows, pick] = False
    kept[kept < 0] = new[free]  # the rest fill the other slots in order, row by row
    return kept


def keep_gpus_in_place(phy2log: torch.Tensor, previous: torch.Tensor, num_experts: int, num_nodes: int,
                       num_gpus: int) -> torch.Tensor:
    """`phy2log` with each node's contents moved to the physical node, and each GPU's to the GPU of that node,
    which held most of its experts in `previous`; kept experts stay in their slots. A relabelling keeps every
    GPU's load and which experts share a GPU or one of the `num_nodes` nodes: balance and (on the real
    nodes) traffic are unchanged."""
    num_layers, num_slots = phy2log.shape
    per_gpu, gpus_per_node = num_slots // num_gpus, num_gpus // num_nodes

    def on_gpus(placement: torch.Tensor) -> torch.Tensor:
        """[L, G, E] copies of each expert on each GPU."""
        slots = placement.view(num_layers, num_gpus, per_gpu)
        return torch.zeros(num_layers, num_gpus, num_experts).scatter_add_(2, slots, torch.ones(slots.shape))

    new, held = on_gpus(phy2log), on_gpus(previous).clamp_max(1)
    # Nodes first (an expert still on its node comes over NVLink, not a NIC), then GPUs within them.
    by_node = (num_layers, num_nodes, gpus_per_node, num_experts)
    node = greedy_matching(new.view(by_node).sum(2) @ held.view(by_node).amax(2).transpose(1, 2))
    overlap = (new @ held.transpose(1, 2)).view(num_layers, num_nodes, gpus_per_node, num_nodes, gpus_per_node)
    within = overlap.transpose(2, 3)[torch.arange(num_layers).unsqueeze(-1), torch.arange(num_nodes), node]
    local = greedy_matching(within.flatten(0, 1)).view(num_layers, num_nodes, gpus_per_node)
    gpu = (node.unsqueeze(-1) * gpus_per_node + local).view(num_layers, num_gpus, 1).expand(-1, -1, per_gpu)
    moved = torch.empty_like(phy2log).view(num_layers, num_gpus, per_gpu)
    moved.scatter_(1, gpu, phy2log.view(num_layers, num_gpus, per_gpu))
    return keep_slots(moved.view(-1, per_gpu), previous.reshape(-1, per_gpu)).view(num_layers, num_slots)


def settle(weight: torch.Tensor, phy2log: torch.Tensor, num_groups: int, num_nodes: int,
           num_gpus: int) -> torch.Tensor:
    """The placement to return, moved as little as it can be from the placement in force for this deployment
    (the last one returned for the same shape and arguments); remembered for the next call."""
    key = (*weight.shape, phy2log.shape[1], num_groups, num_nodes, num_gpus)
    previous = _IN_FORCE.get(key)
    if previous is not None:
        phy2log = keep_gpus_in_place(phy2log, previous, weight.shape[1], num_nodes, num_gpus)
    _IN_FORCE[key] = phy2log
    return phy2log


def rebalance_experts_hierarchical(
'''),
        ("    return mlog2log.gather(-1, slot2mlog)\n",
         "    return settle(weight, mlog2log.gather(-1, slot2mlog), num_groups, num_nodes, num_gpus)\n"),
    ),
)

_KEEP_LAYERS_THAT_FIT = Move(
    name="keep_layers_that_fit",
    description=(
        "Re-place a layer only when it pays: per layer, keep the placement in force while its busiest GPU, "
        "on this window's loads, carries at most `slack` (15%) more than the new placement's. Re-placing a "
        "layer copies most of its experts (~44 MB each for DeepSeek-V3), and the new placement's edge is "
        "in-sample: the next window takes most of it back. Builds on keep_gpus_in_place's memory of the "
        "placement in force (and brings it along where it is missing); `slack` is worth tuning."),
    weight=3.0,
    marker="def keep_layers_that_fit(",
    edits=(
        ("def rebalance_experts_hierarchical(\n",
         '''\
def keep_layers_that_fit(weight: torch.Tensor, phy2log: torch.Tensor, previous: torch.Tensor, num_gpus: int,
                         slack: float = 0.15) -> torch.Tensor:
    """Per layer, `previous` where its busiest GPU on `weight` carries at most 1 + `slack` times phy2log's."""

    def busiest(placement: torch.Tensor) -> torch.Tensor:
        count = torch.zeros_like(weight).scatter_add_(1, placement, torch.ones_like(placement, dtype=weight.dtype))
        return (weight / count.clamp_min(1)).gather(1, placement).view(len(placement), num_gpus, -1).sum(-1).amax(-1)

    keep = busiest(previous) <= (1 + slack) * busiest(phy2log)
    return torch.where(keep.unsqueeze(-1), previous, phy2log)


def rebalance_experts_hierarchical(
'''),
        ("        phy2log = keep_gpus_in_place(phy2log, previous, weight.shape[1], num_nodes, num_gpus)\n",
         "        phy2log = keep_gpus_in_place(phy2log, previous, weight.shape[1], num_nodes, num_gpus)\n"
         "        phy2log = keep_layers_that_fit(weight, phy2log, previous, num_gpus)\n"),
    ),
    builds_on=(_KEEP_GPUS_IN_PLACE,),
)

_SMOOTH_LOADS = Move(
    name="smooth_loads",
    description=(
        "Forecast with more than one window: the placement is scored on the next window, and one window's "
        "loads carry batch noise that does not persist. Keep each layer's load shares as an exponential "
        "average over the windows of this deployment (state keyed by the call's shape and arguments) and "
        "place on the average; a window uncorrelated with the average (a new stream) restarts it. The "
        "memory (0.5) is worth tuning."),
    weight=3.0,
    marker="_LOAD_HISTORY: dict[",
    edits=(
        ("def place_experts(\n",
         '''\
# Each deployment's averaged load shares [L, E] (keyed by shape and arguments).
_LOAD_HISTORY: dict[tuple[int, ...], torch.Tensor] = {}


def smoothed_loads(weight: torch.Tensor, key: tuple[int, ...], memory: float = 0.5) -> torch.Tensor:
    """Each layer's load shares averaged with this deployment's past windows (weight `memory` on the past);
    a window uncorrelated with the past (another stream) restarts the average."""
    share = torch.nn.functional.normalize(weight, p=1, dim=-1)
    past = _LOAD_HISTORY.get(key)
    if past is not None and torch.corrcoef(torch.stack([past.flatten(), share.flatten()]))[0, 1] > 0.5:
        share = memory * past + (1 - memory) * share
    _LOAD_HISTORY[key] = share
    return share


def place_experts(
'''),
        ("    weight = weight.detach().float().cpu()\n",
         "    weight = weight.detach().float().cpu()\n"
         "    weight = smoothed_loads(weight, (*weight.shape, num_replicas, num_groups, num_nodes, num_gpus))\n"),
    ),
)

LIBRARY: tuple[Move, ...] = (_GLOBAL_POLICY, _VECTORISED_PACKING, _SHRINK_LOADS, _SWAP_REFINEMENT,
                             _SNAKE_PLACEMENT, _KEEP_GPUS_IN_PLACE, _KEEP_LAYERS_THAT_FIT, _SMOOTH_LOADS)


def applicable(code: str) -> list[Move]:
    """The library moves whose edits all apply to `code`."""
    return [move for move in LIBRARY if move.apply(code) is not None]
