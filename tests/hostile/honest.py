"""Honest and trivially correct: slot r holds expert r % E (every expert at least once when R >= E)."""
import torch


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    layers, experts = weight.shape
    phy2log = (torch.arange(num_replicas) % experts).repeat(layers, 1)
    logcnt = torch.zeros(layers, experts, dtype=torch.int64)
    logcnt.scatter_add_(1, phy2log, torch.ones_like(phy2log))
    width = int(logcnt.max())
    log2phy = torch.full((layers, experts, width), -1, dtype=torch.int64)
    for slot in range(num_replicas):
        expert = slot % experts
        log2phy[:, expert, slot // experts] = slot
    print("honest call on", tuple(weight.shape))
    return phy2log, log2phy, logcnt
