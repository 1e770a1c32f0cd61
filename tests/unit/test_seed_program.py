"""The seed program is DeepSeek's policy with explicit tie rules: checked by hand and against the reference."""
from __future__ import annotations

import random
import re

import pytest
import torch
from reference_eplb import check_placement, random_shape, random_weight, reference_rebalance

from seed_program import SEED_PATH
from seed_program.eplb import rebalance_experts


def test_global_policy_by_hand() -> None:
    # Layer 0: expert 0 gets two extra replicas (10 -> 5 ties with expert 3 at 5: first wins).
    # Layer 1: all equal, so the extras go to experts 0 and 1; equal packs: the first.
    weight = torch.tensor([[10, 1, 4, 5], [2, 2, 2, 2]])
    phy2log, log2phy, logcnt = rebalance_experts(weight, 6, 1, 1, 2)
    assert phy2log.tolist() == [[3, 0, 1, 2, 0, 0], [2, 0, 0, 3, 1, 1]]
    assert logcnt.tolist() == [[3, 1, 1, 1], [2, 2, 1, 1]]
    assert log2phy.tolist()[0] == [[1, 4, 5], [2, -1, -1], [3, -1, -1], [0, -1, -1]]


def test_hierarchical_policy_by_hand() -> None:
    # Group {2,3} (load 7) is heavier, so it takes node 0; group {0,1} goes to node 1.
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    phy2log, _, logcnt = rebalance_experts(weight, 6, 2, 2, 2)
    assert phy2log.tolist() == [[2, 3, 3, 0, 1, 1]]
    assert logcnt.tolist() == [[1, 2, 1, 2]]


def test_group_loads_are_summed_exactly() -> None:
    # Both groups total 2**24 + 2; a float32 running sum of group 0 would lose its two 1s and
    # send group 1 to node 0. Summed exactly, they tie and the first group takes node 0.
    weight = torch.tensor([[2**24, 1, 1, 2**24 + 2, 0, 0]])
    phy2log, _, _ = rebalance_experts(weight, 6, 2, 2, 2)
    assert phy2log.tolist() == [[0, 1, 2, 3, 4, 5]]


def test_global_policy_when_groups_do_not_divide_over_nodes() -> None:
    # 1 group over 2 nodes: the global policy replicates experts 3 and 2 and packs all 6 slots.
    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    phy2log, _, _ = rebalance_experts(weight, 6, 1, 2, 2)
    assert phy2log.tolist() == [[1, 3, 0, 3, 2, 2]]


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_on_random_inputs(seed: int) -> None:
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    for trial in range(40):
        num_layers, num_experts, num_replicas, groups, nodes, gpus = random_shape(rng)
        weight = random_weight(trial % 4, (num_layers, num_experts), gen)
        phy2log, log2phy, logcnt = rebalance_experts(weight, num_replicas, groups, nodes, gpus)
        expected = reference_rebalance(weight, num_replicas, groups, nodes, gpus)
        case = (trial, num_layers, num_experts, num_replicas, groups, nodes, gpus, weight.dtype)
        assert torch.equal(phy2log, expected[0]), case
        assert torch.equal(logcnt, expected[1]), case
        check_placement(phy2log, log2phy, logcnt, num_experts)


@pytest.mark.parametrize("nodes,gpus", [(4, 32), (18, 144)])
def test_matches_reference_on_deepseek_v3_shapes(nodes: int, gpus: int) -> None:
    gen = torch.Generator().manual_seed(nodes)
    # Large token counts (sums above 2**24 round in float32) and a tie-heavy layer.
    weight = torch.cat([torch.randint(0, 2_000_000, (2, 256), generator=gen), torch.randint(0, 3, (1, 256))])
    phy2log, log2phy, logcnt = rebalance_experts(weight, 288, 8, nodes, gpus)
    expected = reference_rebalance(weight, 288, 8, nodes, gpus)
    assert torch.equal(phy2log, expected[0]) and torch.equal(logcnt, expected[1])
    check_placement(phy2log, log2phy, logcnt, 256)


def test_groups_stay_on_one_node() -> None:
    weight = torch.rand(5, 64, generator=torch.Generator().manual_seed(0))
    phy2log, _, _ = rebalance_experts(weight, 96, 8, 4, 16)  # 24 slots per node, groups of 8
    node_of_slot = torch.arange(96) // 24
    for layer in range(5):
        for group in range(8):
            nodes = node_of_slot[(phy2log[layer] // 8) == group].unique()
            assert len(nodes) == 1, (layer, group, nodes)


def test_replication_is_optimal_apportionment() -> None:
    # D'Hondt: no replica move can lower the largest per-replica load, i.e.
    # max_e w_e / c_e <= min over experts with c_e > 1 of w_e / (c_e - 1).
    weight = (torch.randn(20, 32, generator=torch.Generator().manual_seed(1)) * 1.5).exp()
    _, _, logcnt = rebalance_experts(weight, 48, 1, 1, 4)
    per_replica = weight / logcnt
    removal = torch.where(logcnt > 1, weight / (logcnt - 1).clamp(min=1), torch.inf)
    assert bool((per_replica.max(-1).values <= removal.min(-1).values).all())


def test_dtypes_and_layouts_give_the_float32_answer_and_input_is_untouched() -> None:
    counts = torch.randint(0, 100, (3, 16), generator=torch.Generator().manual_seed(2))
    before = counts.clone()
    expected = rebalance_experts(counts.float(), 24, 4, 2, 4)
    for dtype in (torch.int64, torch.int32, torch.float16, torch.float64):
        got = rebalance_experts(counts.to(dtype), 24, 4, 2, 4)
        assert all(torch.equal(a, b) for a, b in zip(got, expected)), dtype
        assert all(t.device.type == "cpu" for t in got)
    transposed = counts.t().contiguous().t()  # same values, non-contiguous
    assert all(torch.equal(a, b) for a, b in zip(rebalance_experts(transposed, 24, 4, 2, 4), expected))
    assert torch.equal(counts, before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_input_gives_the_cpu_answer() -> None:
    weight = torch.rand(4, 64, generator=torch.Generator().manual_seed(3))
    expected = rebalance_experts(weight, 96, 8, 4, 16)
    got = rebalance_experts(weight.cuda(), 96, 8, 4, 16)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


@pytest.mark.parametrize(
    "shape,args",
    [((4, 8), (6, 1, 1, 2)), ((2, 2, 8), (8, 1, 1, 2)), ((2, 8), (12, 1, 1, 8)), ((2, 8), (8, 1, 3, 4))],
)
def test_rejects_impossible_shapes(shape: tuple[int, ...], args: tuple[int, int, int, int]) -> None:
    # R < E; weight not 2-D; G does not divide R; N does not divide G.
    with pytest.raises(ValueError):
        rebalance_experts(torch.ones(shape), *args)


def test_evolve_block_leaves_the_entry_point_outside() -> None:
    text = SEED_PATH.read_text()
    lines = text.splitlines()
    start, end = lines.index("# EVOLVE-BLOCK-START"), lines.index("# EVOLVE-BLOCK-END")
    assert "import torch" in lines[:start]
    assert any(re.match(r"def rebalance_experts\(", line) for line in lines[end:])
    assert not any(re.match(r"def rebalance_experts\(", line) for line in lines[:end])
