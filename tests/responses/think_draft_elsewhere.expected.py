"""A small expert-placement program: the parent that every response in this corpus edits."""
import torch

# EVOLVE-BLOCK-START
def replicate(weight, num_phy):
    """Give each redundant slot to the expert with the largest load per replica."""
    num_layers, num_log = weight.shape
    phy2log = torch.arange(num_phy).repeat(num_layers, 1) % num_log
    logcnt = torch.ones(num_layers, num_log, dtype=torch.int64)
    rows = torch.arange(num_layers)

    for slot in range(num_log, num_phy):
        best = (weight / logcnt).max(dim=-1).indices
        phy2log[:, slot] = best
        logcnt[rows, best] += 1
    return phy2log, logcnt


def pack(loads, num_packs):
    """Greedy packing: heaviest item first, into the lightest pack that has room."""
    num_layers, num_items = loads.shape
    per_pack = max(1, num_items // num_packs)
    pack_of = torch.empty(num_layers, num_items, dtype=torch.int64)
    for layer in range(num_layers):
        totals = [0.0] * num_packs
        counts = [0] * num_packs
        for item in loads[layer].argsort(descending=True).tolist():
            open_packs = [p for p in range(num_packs) if counts[p] < per_pack]
            target = min(open_packs, key=totals.__getitem__)
            pack_of[layer, item] = target
            totals[target] += float(loads[layer, item])
            counts[target] += 1
    return pack_of


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """Global policy: replicate hot experts, then spread the replicas over the GPUs."""
    weight = weight.float().cpu()
    num_layers, num_log = weight.shape
    phy2log, logcnt = replicate(weight, num_replicas)
    replica_load = weight.gather(-1, phy2log) / logcnt.gather(-1, phy2log)
    gpu_of = pack(replica_load, num_gpus)
    order = (gpu_of * num_replicas + torch.arange(num_replicas)).argsort(dim=-1)
    phy2log = phy2log.gather(-1, order)
    return phy2log, build_log2phy(phy2log, logcnt), logcnt
# EVOLVE-BLOCK-END


def build_log2phy(phy2log, logcnt):
    """Inverse map padded with -1. Outside the EVOLVE block: it is not what the search changes."""
    num_layers, num_log = logcnt.shape
    log2phy = torch.full((num_layers, num_log, int(logcnt.max())), -1, dtype=torch.int64)
    for layer in range(num_layers):
        seen = [0] * num_log
        for slot, expert in enumerate(phy2log[layer].tolist()):
            log2phy[layer, expert, seen[expert]] = slot
            seen[expert] += 1
    return log2phy
