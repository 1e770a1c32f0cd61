"""Expert-parallel load balancing (EPLB): place the replicas of MoE experts on GPUs.

Given the recent load of every logical expert of every MoE layer, choose how many replicas
(physical copies) each expert gets and which GPU slot holds each replica, so that the most
loaded GPU of each layer carries as little load as possible. Tokens of an expert are split
evenly over its replicas; a layer's time is set by its most loaded GPU.

This is DeepSeek's EPLB policy, written from its public description:

* Hierarchical policy (used when ``num_groups % num_nodes == 0``): expert groups are packed
  onto nodes (so experts of a group share a node), each node replicates its own experts into
  its slots, and the node's replicas are packed onto its GPUs.
* Global policy (otherwise): the same procedure with one group and one node, i.e. all experts
  are replicated together and the replicas are packed onto all GPUs.

Determinism and tie rules (part of the policy's definition; other implementations that
claim to be "the seed" must follow them bit for bit):

* Loads are converted to float32 and all arithmetic is float32 (like DeepSeek's
  ``weight.float()``), except the per-group sums of step 1, which are taken in float64 and
  rounded to float32 so that they do not depend on summation order (exact for token counts).
* Packing sorts items by load, heaviest first, with ties broken by lower index first (a
  stable sort), and puts each item in the lightest pack that still has room; among equally
  light packs, the first one. Pack loads accumulate in float32 in that order.
* Replication adds replicas one at a time to the expert with the largest ``load / count``
  (float32 division); among equal ratios, the first expert.

The placement is computed on the CPU, whatever device ``weight`` is on, and the returned
tensors are on the CPU.
"""
import torch

# EVOLVE-BLOCK-START


def balanced_packing(weight: torch.Tensor, num_packs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each row's items into `num_packs` packs of equal item count with balanced load.

    Greedy "longest processing time first": heavy items are placed first, each in the lightest
    pack that still has room, so light items fill the gaps at the end. The equal item count
    matters because packs are GPUs (or nodes) with a fixed number of slots.

    Args:
        weight: [X, n] float32 load of each item; n must be a multiple of `num_packs`.
        num_packs: number of packs.

    Returns:
        pack_index: [X, n] int64, the pack each item goes to.
        rank_in_pack: [X, n] int64, the item's position inside its pack (0, 1, ...).
    """
    num_rows, num_items = weight.shape
    capacity = num_items // num_packs
    pack_index = [[0] * num_items for _ in range(num_rows)]
    rank_in_pack = [[0] * num_items for _ in range(num_rows)]
    # A stable sort keeps equal loads in index order: that is the tie rule.
    order = torch.sort(weight, dim=-1, descending=True, stable=True).indices
    for row in range(num_rows):
        pack_load = torch.zeros(num_packs, dtype=torch.float32)
        pack_size = [0] * num_packs
        for item in order[row].tolist():
            # argmin returns the first minimum on ties; full packs are hidden behind +inf.
            pack = int(torch.argmin(pack_load))
            pack_index[row][item] = pack
            rank_in_pack[row][item] = pack_size[pack]
            pack_load[pack] += weight[row, item]
            pack_size[pack] += 1
            if pack_size[pack] == capacity:
                pack_load[pack] = float("inf")
    return torch.tensor(pack_index), torch.tensor(rank_in_pack)


def replicate_experts(weight: torch.Tensor, num_physical: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Give `num_physical` replicas to each row's experts, minimising the largest per-replica load.

    Every expert starts with one replica; each extra replica goes to the expert whose replicas
    are currently the most loaded (largest load / count). This greedy is exactly optimal for
    the largest per-replica load (it is D'Hondt apportionment).

    Args:
        weight: [X, n] float32 load of each expert, n <= num_physical.
        num_physical: number of replicas per row.

    Returns:
        phy2log: [X, num_physical] int64, the expert of each replica: first one replica of each
            expert in order, then the extra replicas in the order they were added.
        logcnt: [X, n] int64, replica count of each expert.
    """
    num_rows, num_logical = weight.shape
    rows = torch.arange(num_rows)
    phy2log = torch.arange(num_physical, dtype=torch.int64).repeat(num_rows, 1)
    logcnt = torch.ones(num_rows, num_logical, dtype=torch.int64)
    for replica in range(num_logical, num_physical):
        # argmax returns the first maximum on ties.
        hottest = torch.argmax(weight / logcnt, dim=-1)
        phy2log[:, replica] = hottest
        logcnt[rows, hottest] += 1
    return phy2log, logcnt


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """Row-wise inverse of a batch of permutations: inv[r, perm[r, i]] = i."""
    inverse = torch.empty_like(perm)
    positions = torch.arange(perm.shape[-1], dtype=perm.dtype).expand_as(perm)
    return inverse.scatter_(-1, perm, positions)


def rebalance_experts_hierarchical(
    weight: torch.Tensor, num_physical: int, num_groups: int, num_nodes: int, num_gpus: int
) -> torch.Tensor:
    """Hierarchical placement: groups onto nodes, replication per node, replicas onto GPUs.

    Keeping an expert group on one node keeps its traffic inside the node; balancing happens at
    each level with `balanced_packing`.

    Args:
        weight: [L, E] float32 load per logical expert (CPU).
        num_physical: R, the number of physical slots per layer.
        num_groups: expert groups; must divide E and be a multiple of `num_nodes`.
        num_nodes, num_gpus: the cluster; GPU g holds slots [g*R/G, (g+1)*R/G).

    Returns:
        phy2log: [L, R] int64, the logical expert held by each physical slot.
    """
    num_layers, num_logical = weight.shape
    if num_logical % num_groups != 0:
        raise ValueError(f"num_groups={num_groups} does not divide the {num_logical} experts")
    group_size = num_logical // num_groups
    groups_per_node = num_groups // num_nodes
    experts_per_node = num_logical // num_nodes
    slots_per_node = num_physical // num_nodes
    slots_per_gpu = num_physical // num_gpus

    # Step 1: pack expert groups onto nodes by total group load (float64 sum: order-free).
    group_load = weight.reshape(num_layers, num_groups, group_size).sum(-1, dtype=torch.float64).float()
    group_node, group_rank = balanced_packing(group_load, num_nodes)
    # Renumber experts node-major ("meta-logical" ids): node n owns ids
    # [n*experts_per_node, (n+1)*experts_per_node), its groups in rank order.
    group_start = (group_node * groups_per_node + group_rank) * group_size
    log2mlog = (group_start.unsqueeze(-1) + torch.arange(group_size)).flatten(1)
    mlog2log = inverse_permutation(log2mlog)

    # Step 2: replicate each node's experts into that node's slots.
    node_load = weight.gather(-1, mlog2log).view(num_layers * num_nodes, experts_per_node)
    phy2mlog, mlogcnt = replicate_experts(node_load, slots_per_node)

    # Step 3: pack each node's replicas (load split evenly over replicas) onto its GPUs.
    replica_load = (node_load / mlogcnt).gather(-1, phy2mlog)
    gpu, rank = balanced_packing(replica_load, num_gpus // num_nodes)
    slot_of_replica = gpu * slots_per_gpu + rank
    node_slot2mlog = torch.empty_like(phy2mlog).scatter_(-1, slot_of_replica, phy2mlog)

    # Back from node-local meta-logical ids to logical expert ids.
    node_offset = torch.arange(num_nodes).view(1, num_nodes, 1) * experts_per_node
    slot2mlog = (node_slot2mlog.view(num_layers, num_nodes, slots_per_node) + node_offset).flatten(1)
    return mlog2log.gather(-1, slot2mlog)


def place_experts(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int,
    old_global_expert_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Choose the policy and return phy2log [L, R] (int64, CPU); see `rebalance_experts`.

    `old_global_expert_indices` is the placement in force (the phy2log this program returned on
    the previous window, or None). DeepSeek's policy re-places from scratch and ignores it.
    """
    weight = weight.detach().float().cpu()
    if num_groups % num_nodes == 0:
        return rebalance_experts_hierarchical(weight, num_replicas, num_groups, num_nodes, num_gpus)
    # Groups cannot be kept whole on nodes: treat everything as one group on one node.
    return rebalance_experts_hierarchical(weight, num_replicas, 1, 1, num_gpus)


# EVOLVE-BLOCK-END


def rebalance_experts(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int,
    old_global_expert_indices: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entry point called by the serving engine and the evaluator; its signature is fixed.

    Args:
        weight: [L, E] load per logical expert over the last window (any int/float dtype,
            any device).
        num_replicas: R, physical slots per layer; a multiple of `num_gpus`, at least E.
        num_groups: expert groups (DeepSeek's node-limited routing); 1 if the model has none.
        num_nodes: N, nodes; divides `num_gpus`.
        num_gpus: G; GPU g holds slots [g*R/G, (g+1)*R/G).
        old_global_expert_indices: [L, R] int64, the placement in force (vLLM's name for it):
            this program's previous phy2log, or None on the first call; passed to `place_experts`.

    Returns:
        phy2log: [L, R] int64, the logical expert held by each slot.
        log2phy: [L, E, R - E + 1] int64, for each expert the slots holding it in increasing
            order, padded with -1 (R - E + 1 is the most replicas an expert can have).
        logcnt: [L, E] int64, the replica count of each expert.
        All three are on the device `place_experts` computed on (the CPU for this program).
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be [layers, experts], got shape {tuple(weight.shape)}")
    num_layers, num_logical = weight.shape
    if num_replicas < num_logical or num_replicas % num_gpus != 0 or num_gpus % num_nodes != 0:
        raise ValueError(
            f"need num_replicas >= experts, num_gpus | num_replicas and num_nodes | num_gpus; got "
            f"E={num_logical}, R={num_replicas}, G={num_gpus}, N={num_nodes}"
        )
    phy2log = place_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, old_global_expert_indices).long()
    device = phy2log.device

    # Derive counts and the slot lists from phy2log so the three outputs cannot disagree.
    logcnt = torch.zeros(num_layers, num_logical, dtype=torch.int64, device=device)
    logcnt.scatter_add_(-1, phy2log, torch.ones_like(phy2log))
    slots = torch.sort(phy2log, dim=-1, stable=True).indices  # grouped by expert, slot order
    experts = phy2log.gather(-1, slots)
    first = logcnt.cumsum(-1) - logcnt  # position of each expert's first slot in `slots`
    rank = torch.arange(num_replicas, device=device) - first.gather(-1, experts)
    max_count = num_replicas - num_logical + 1
    log2phy = torch.full((num_layers, num_logical * max_count), -1, dtype=torch.int64, device=device)
    log2phy.scatter_(-1, experts * max_count + rank, slots)
    return phy2log, log2phy.view(num_layers, num_logical, max_count), logcnt
