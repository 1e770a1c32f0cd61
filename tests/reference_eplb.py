"""A slow, independent reference of the seed's EPLB policy, for checking faster implementations.

Plain Python: one layer at a time, lists of floats, explicit loops; torch is used only to
convert the input to float32 and the output to tensors. float32 arithmetic is reproduced by
computing each operation in Python's float64 and rounding the result to float32: for a
single +, or / of float32 operands, this double rounding gives exactly the float32 result
(float64 carries more than 2*24+2 mantissa bits), so ties come out bit for bit as in torch.

Tie rules (see seed_program/eplb.py): heaviest item first with equal loads in index order,
each into the first of the lightest packs that still have room; each extra replica to the
first expert with the largest load/count; group sums exact then rounded to float32.

Also here, for every test that compares an implementation with it: `check_placement` (the
output contract, checked slot by slot) and random inputs that exercise the tie rules.
"""
from __future__ import annotations

import math
import random
import struct

import torch


def f32(x: float) -> float:
    """Round a Python float to the nearest float32 value."""
    return struct.unpack("f", struct.pack("f", x))[0]


def greedy_packs(loads: list[float], num_packs: int) -> list[list[int]]:
    """Pack items into `num_packs` packs of len(loads)/num_packs items; return each pack's items in order."""
    capacity = len(loads) // num_packs
    packs: list[list[int]] = [[] for _ in range(num_packs)]
    pack_load = [0.0] * num_packs
    for item in sorted(range(len(loads)), key=lambda i: -loads[i]):  # sorted() is stable
        best = -1
        for pack in range(num_packs):
            if len(packs[pack]) < capacity and (best < 0 or pack_load[pack] < pack_load[best]):
                best = pack
        packs[best].append(item)
        pack_load[best] = f32(pack_load[best] + loads[item])
    return packs


def dhondt(loads: list[float], num_slots: int) -> list[int]:
    """Replicas in slot order: each expert once, then each extra one to the first largest load/count."""
    counts = [1] * len(loads)
    replicas = list(range(len(loads)))
    while len(replicas) < num_slots:
        best = 0
        for expert in range(1, len(loads)):
            if f32(loads[expert] / counts[expert]) > f32(loads[best] / counts[best]):
                best = expert
        counts[best] += 1
        replicas.append(best)
    return replicas


def place_layer(
    loads: list[float], num_slots: int, num_groups: int, num_nodes: int, num_gpus: int
) -> list[int]:
    """phy2log of one layer under the hierarchical procedure with the given groups and nodes."""
    group_size = len(loads) // num_groups
    group_loads = [f32(math.fsum(loads[g * group_size : (g + 1) * group_size])) for g in range(num_groups)]
    phy2log: list[int] = []
    for node_groups in greedy_packs(group_loads, num_nodes):
        experts = [g * group_size + k for g in node_groups for k in range(group_size)]
        node_loads = [loads[e] for e in experts]
        replicas = dhondt(node_loads, num_slots // num_nodes)
        count = {r: replicas.count(r) for r in set(replicas)}
        replica_loads = [f32(node_loads[r] / count[r]) for r in replicas]
        for gpu_items in greedy_packs(replica_loads, num_gpus // num_nodes):
            phy2log.extend(experts[replicas[i]] for i in gpu_items)
    return phy2log


def reference_rebalance(
    weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int, num_gpus: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed policy's (phy2log [L, R], logcnt [L, E]) as int64 CPU tensors."""
    rows = weight.detach().float().cpu().tolist()
    if num_groups % num_nodes != 0:
        num_groups, num_nodes = 1, 1
    phy2log = [place_layer(row, num_replicas, num_groups, num_nodes, num_gpus) for row in rows]
    logcnt = [[layer.count(e) for e in range(len(row))] for layer, row in zip(phy2log, rows)]
    return torch.tensor(phy2log, dtype=torch.int64), torch.tensor(logcnt, dtype=torch.int64)


def check_placement(
    phy2log: torch.Tensor, log2phy: torch.Tensor, logcnt: torch.Tensor, num_experts: int
) -> None:
    """Assert the output contract of `rebalance_experts`, one layer and one expert at a time."""
    assert phy2log.dtype == log2phy.dtype == logcnt.dtype == torch.int64
    assert log2phy.shape[:2] == logcnt.shape == (phy2log.shape[0], num_experts)
    for layer, (slots, counts, lists) in enumerate(zip(phy2log.tolist(), logcnt.tolist(), log2phy.tolist())):
        assert all(0 <= e < num_experts for e in slots), f"layer {layer}: expert id out of range"
        for expert in range(num_experts):
            held = [s for s, e in enumerate(slots) if e == expert]
            assert held, f"layer {layer}: expert {expert} has no replica"
            assert counts[expert] == len(held), f"layer {layer}: logcnt[{expert}] is wrong"
            listed = lists[expert]
            assert sorted(listed[: len(held)]) == held, f"layer {layer}: log2phy[{expert}] is wrong"
            assert all(s == -1 for s in listed[len(held) :]), f"layer {layer}: log2phy[{expert}] padding"


# -- inputs for comparing implementations with the reference ------------------------------------


def random_shape(rng: random.Random) -> tuple[int, int, int, int, int, int]:
    """(L, E, R, groups, nodes, gpus) small enough for the reference, covering both policies."""
    num_nodes = rng.choice([1, 2, 4])
    num_gpus = num_nodes * rng.choice([1, 2, 3])
    if rng.random() < 0.7:
        num_groups = num_nodes * rng.choice([1, 2, 3])  # hierarchical
    else:
        num_groups = rng.choice([1, 3, 5])  # global unless num_nodes == 1
    num_experts = num_groups * rng.choice([1, 2, 3, 4])
    num_replicas = num_gpus * rng.choice([1, 2, 3, 4])
    while num_replicas < num_experts:
        num_replicas += num_gpus
    return rng.choice([1, 2, 3]), num_experts, num_replicas, num_groups, num_nodes, num_gpus


def random_weight(kind: int, shape: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """Loads of several kinds: tie-heavy small integers, zeros, uniform floats, heavy-tailed halfs."""
    if kind == 0:
        return torch.randint(0, 4, shape, generator=gen)
    if kind == 1:
        return torch.zeros(shape, dtype=torch.int64)
    if kind == 2:
        return torch.rand(shape, generator=gen, dtype=torch.float64)
    return (torch.randn(shape, generator=gen) * 2).exp().half()


def degenerate_loads() -> torch.Tensor:
    """[4, 8] loads a program must survive: NaN, infinities, negatives, an all-zero layer, and one
    expert with everything."""
    return torch.tensor([
        [float("nan"), 1.0, 2.0, 3.0, -4.0, 5.0, 6.0, 7.0],
        [float("inf"), 1.0, 0.0, 3.0, float("-inf"), 5.0, 6.0, 7.0],
        [0.0] * 8,
        [0.0] * 7 + [1e300],
    ], dtype=torch.float64)
