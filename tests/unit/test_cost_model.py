"""The deployment cost model: each term on hand-computed cases, its approximation against exact routing."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from evaluator.scoring import cost_model
from evaluator.scoring.cost_model import WindowCost, migration, scenario_cost, window_cost
from evaluator.workloads.deployment import DEEPSEEK_V3, QWEN3_30B_A3B, QWEN3_235B_A22B, DeploymentCosts
from evaluator.workloads.scenarios import DEEPSEEK_V3_DECODE, DEEPSEEK_V3_PREFILL, QWEN3_30B, QWEN3_235B, Shape, suite
from seed_program.eplb import rebalance_experts

# Round numbers: 1 s per token-expert assignment (6 FLOPs at 6 FLOP/s), 3 bytes per copy (1 out,
# 2 back), 3 bytes per expert's weights, links of 1 B/s, one step per window and per period.
UNIT = DeploymentCosts(hidden_size=1, moe_intermediate_size=1, experts_per_token=1, groups_per_token=1,
                       dispatch_bytes_per_value=1.0, combine_bytes_per_value=2.0, weight_bytes_per_value=1.0,
                       nvlink_bytes_per_s=1.0, internode_bytes_per_s=1.0, flops_per_s=6.0, flop_efficiency=1.0,
                       steps_per_window=1)


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def _logcnt(phy2log: torch.Tensor, num_experts: int) -> torch.Tensor:
    return torch.zeros(phy2log.shape[0], num_experts, dtype=torch.int64).scatter_add_(
        1, phy2log, torch.ones_like(phy2log))


def _cost(loads: list[list[int]], phy2log: list[list[int]], shape: Shape, costs: DeploymentCosts,
          previous: list[list[int]] | None = None) -> WindowCost:
    placement = _t(phy2log)
    return window_cost(_t(loads), placement, _logcnt(placement, shape.num_experts),
                       None if previous is None else _t(previous), shape, costs)


# -- compute and communication, by hand -------------------------------------------------------------

def test_compute_and_nvlink_on_one_node() -> None:
    # Top-1 routing, 4 tokens per step: 3 to expert 0 on GPU 0, 1 to expert 1 on GPU 1.
    cost = _cost([[3, 1]], [[0, 1]], Shape(1, 2, 2, 1, 1, 2), UNIT)
    assert cost.compute_ms == pytest.approx(3000)  # the busiest GPU's 3 assignments
    # GPU 0 is touched by 3/4 of the tokens, half of which already sit on it: 1.5 copies x 3 bytes.
    assert cost.communication_ms == pytest.approx(4500)
    assert cost.migration_ms == 0 and cost.migrated_fraction == 0
    assert cost.total_ms == pytest.approx(7500)
    # Ideal: 2 assignments per GPU; every token on one GPU, evenly: 4 x 1/2 / 2 = 1 copy x 3 bytes.
    assert cost.ideal_ms == pytest.approx(2000 + 3000)
    assert cost.efficiency == pytest.approx(5000 / 7500)
    assert cost.nodes_per_token == pytest.approx(1)


@pytest.mark.parametrize("nvlink, expected_ms", [(1.0, 4500), (2.0, 3000)])
def test_each_phase_takes_its_slower_link(nvlink: float, expected_ms: float) -> None:
    # Two nodes of two GPUs; the four tokens all go to node 0 (experts 0 and 1), half of them from
    # node 1: 2 copies x 3 bytes over node 0's two 1 B/s NICs = 3 s. NVLink: GPU 0 gets the
    # 3/4 of tokens that pick expert 0, less the half already on it: 1.5 x 3 bytes / nvlink.
    shape = Shape(1, 4, 4, 1, 2, 4)
    cost = _cost([[3, 1, 0, 0]], [[0, 1, 2, 3]], shape, replace(UNIT, nvlink_bytes_per_s=nvlink))
    assert cost.communication_ms == pytest.approx(expected_ms)
    assert cost.nodes_per_token == pytest.approx(1)


def test_dispatch_and_combine_bytes_add_up() -> None:
    shape = Shape(1, 2, 2, 1, 2, 2)  # two nodes of one GPU: NIC only
    fp8_bf16 = _cost([[3, 1]], [[0, 1]], shape, UNIT)
    bf16_bf16 = _cost([[3, 1]], [[0, 1]], shape, replace(UNIT, dispatch_bytes_per_value=2.0))
    assert fp8_bf16.communication_ms == pytest.approx(4500)  # 1.5 copies x (1 + 2) bytes
    assert bf16_bf16.communication_ms == pytest.approx(6000)  # 1.5 copies x (2 + 2) bytes


@pytest.mark.parametrize("phy2log, nodes", [([[0, 1, 2, 3]], 1.0), ([[0, 2, 1, 3]], 2.0)])
def test_group_limited_routing_keeps_tokens_on_their_group_nodes(phy2log: list[list[int]], nodes: float) -> None:
    # Groups {0, 1} and {2, 3}; each token picks one group and both of its experts (top-2).
    # Whole groups on nodes: every token touches one node. Groups split over nodes: both.
    shape = Shape(1, 4, 4, 2, 2, 2)
    cost = _cost([[3, 3, 1, 1]], phy2log, shape, replace(UNIT, experts_per_token=2))
    assert cost.nodes_per_token == pytest.approx(nodes)


def test_touch_is_exact_for_top1_routing() -> None:
    loads = _t([[5, 3, 2, 0, 6]])
    phy2log = _t([[0, 4, 1, 2, 3, 4]])  # expert 4 twice: GPU 0 and GPU 2
    shape = Shape(1, 5, 6, 1, 3, 3)
    node_touch, gpu_touch = cost_model.touch_probabilities(loads, phy2log, _logcnt(phy2log, 5), shape, UNIT)
    assert gpu_touch[0].tolist() == pytest.approx([(5 + 3) / 16, (3 + 2) / 16, 3 / 16])
    assert node_touch[0].tolist() == pytest.approx(gpu_touch[0].tolist())


def test_layers_are_scored_independently_and_summed() -> None:
    shape = replace(DEEPSEEK_V3_PREFILL, num_layers=2)
    loads, phy2log, logcnt = _seed_window(shape, seed=0)
    both = window_cost(loads, phy2log, logcnt, None, shape, DEEPSEEK_V3)
    one = replace(shape, num_layers=1)
    parts = [window_cost(loads[i:i + 1], phy2log[i:i + 1], logcnt[i:i + 1], None, one, DEEPSEEK_V3) for i in (0, 1)]
    for field in ("compute_ms", "communication_ms", "ideal_ms"):
        assert getattr(both, field) == pytest.approx(sum(getattr(p, field) for p in parts))
    tokens = loads.sum(-1).double()
    expected_nodes = sum(t * p.nodes_per_token for t, p in zip(tokens.tolist(), parts)) / tokens.sum().item()
    assert both.nodes_per_token == pytest.approx(expected_nodes)


def test_empty_window_costs_nothing() -> None:
    cost = _cost([[0, 0]], [[0, 1]], Shape(1, 2, 2, 1, 1, 2), UNIT)
    assert (cost.total_ms, cost.ideal_ms, cost.nodes_per_token, cost.efficiency) == (0, 0, 0, 1.0)


# -- migration -----------------------------------------------------------------------------------

# Two layers, two nodes of two GPUs, one slot each. A transfer of one expert (3 bytes) takes 1 s
# over NVLink (3 B/s) and 3 s over a NIC (1 B/s).
MOVE_SHAPE = Shape(2, 4, 4, 1, 2, 4)
MOVE_COSTS = replace(UNIT, nvlink_bytes_per_s=3.0)
OLD = [[0, 1, 2, 3], [0, 1, 2, 3]]


def _migration(new: list[list[int]], old: list[list[int]] | None = OLD, shape: Shape = MOVE_SHAPE):
    return migration(_t(new), None if old is None else _t(old), shape, MOVE_COSTS)


def test_no_migration_without_a_placement_in_force_or_a_change() -> None:
    assert _migration([[1, 0, 3, 2], [3, 2, 1, 0]], old=None) == (0.0, 0.0)
    assert _migration(OLD) == (0.0, 0.0)
    # Permuting slots inside each GPU moves nothing.
    assert migration(_t([[1, 0, 3, 2]]), _t([[0, 1, 2, 3]]), Shape(1, 4, 4, 1, 1, 2), MOVE_COSTS) == (0.0, 0.0)


@pytest.mark.parametrize("new, seconds", [
    ([[1, 0, 2, 3], [0, 1, 2, 3]], 1.0),  # swap inside node 0: both from a neighbour, over NVLink
    ([[2, 1, 0, 3], [0, 1, 2, 3]], 3.0),  # swap across nodes: over the NICs
    ([[1, 0, 2, 3], [2, 1, 0, 3]], 3.0),  # GPU 0: one over NVLink, one over its NIC, side by side
    ([[1, 0, 2, 3], [1, 0, 2, 3]], 2.0),  # GPU 0: one per layer over NVLink, one after the other
])
def test_migration_over_nvlink_or_nic(new: list[list[int]], seconds: float) -> None:
    moved, fraction = _migration(new)
    assert moved == pytest.approx(seconds)
    assert fraction == pytest.approx(sum(sum(a != b for a, b in zip(n, o)) for n, o in zip(new, OLD)) / 8)


def test_a_gpu_copies_an_expert_it_already_holds() -> None:
    # GPU 0 held {0, 1} and now holds {0, 0}: the second 0 is a local copy. GPU 1 held {2, 2}
    # and now holds {1, 2}: expert 1 comes from GPU 0, over NVLink.
    seconds, fraction = migration(_t([[0, 0, 1, 2]]), _t([[0, 1, 2, 2]]), Shape(1, 3, 4, 1, 1, 2), MOVE_COSTS)
    assert (seconds, fraction) == (pytest.approx(1.0), 0.25)


# -- efficiency and aggregation -------------------------------------------------------------------

def _random_placement(shape: Shape, generator: torch.Generator) -> torch.Tensor:
    """Every expert once, the other slots random experts, slots shuffled per layer."""
    extra = torch.randint(0, shape.num_experts, (shape.num_layers, shape.num_replicas - shape.num_experts),
                          generator=generator)
    placement = torch.cat([torch.arange(shape.num_experts).expand(shape.num_layers, -1), extra], -1)
    order = torch.rand(shape.num_layers, shape.num_replicas, generator=generator).argsort(-1)
    return placement.gather(1, order)


@pytest.mark.parametrize("shape, costs", [
    (Shape(3, 16, 24, 4, 2, 8), replace(DEEPSEEK_V3, groups_per_token=2)),
    (Shape(2, 16, 20, 1, 5, 10), replace(QWEN3_235B_A22B, experts_per_token=3)),
    (Shape(2, 8, 8, 2, 1, 4), replace(DEEPSEEK_V3, experts_per_token=4, groups_per_token=1)),
])
def test_efficiency_is_a_share_of_the_total(shape: Shape, costs: DeploymentCosts) -> None:
    generator = torch.Generator().manual_seed(7)
    for _ in range(5):
        loads = (torch.rand(shape.num_layers, shape.num_experts, generator=generator) ** 4 * 1000).long()
        phy2log, previous = _random_placement(shape, generator), _random_placement(shape, generator)
        cost = window_cost(loads, phy2log, _logcnt(phy2log, shape.num_experts), previous, shape, costs)
        assert 0 < cost.efficiency <= 1
        assert cost.total_ms == pytest.approx(cost.compute_ms + cost.communication_ms + cost.migration_ms)
        assert 1 <= cost.nodes_per_token <= min(shape.num_nodes, costs.experts_per_token) + 1e-9


def test_one_gpu_is_ideal() -> None:
    shape = Shape(3, 8, 8, 2, 1, 1)
    loads = torch.randint(0, 100, (3, 8), generator=torch.Generator().manual_seed(1))
    phy2log = torch.arange(8).repeat(3, 1)
    cost = window_cost(loads, phy2log, _logcnt(phy2log, 8), phy2log, shape, replace(DEEPSEEK_V3, groups_per_token=1))
    assert cost.communication_ms == 0 and cost.migration_ms == 0
    assert cost.efficiency == pytest.approx(1.0)


def test_scenario_cost_is_a_ratio_of_sums() -> None:
    windows = [WindowCost(1, 2, 3, 6, 3, 2.0, 0.5), WindowCost(10, 0, 0, 10, 9, 3.0, 0.0)]
    total = scenario_cost(windows)
    assert total.efficiency == pytest.approx((3 + 9) / (6 + 10))
    assert (total.compute_ms, total.nodes_per_token, total.migrated_fraction) == (5.5, 2.5, 0.25)


# -- the approximation against exact per-token routing ----------------------------------------------

def _seed_window(shape: Shape, seed: int, hierarchical: bool = True, sigma: float = 1.4):
    """Per-expert logits of spread `sigma`, one simulated window to fit the seed on, its placement."""
    generator = torch.Generator().manual_seed(seed)
    logits = sigma * torch.randn(shape.num_layers, shape.num_experts, generator=generator, dtype=torch.float64)
    spread = torch.arange(shape.num_replicas).remainder(shape.num_experts).repeat(shape.num_layers, 1)
    fit = cost_model.simulate_routing(logits, 2048, spread, _logcnt(spread, shape.num_experts), shape,
                                      DEEPSEEK_V3, generator).loads
    groups, nodes = (shape.num_groups, shape.num_nodes) if hierarchical else (1, 1)
    phy2log, _, logcnt = rebalance_experts(fit, shape.num_replicas, groups, nodes, shape.num_gpus)
    return fit, phy2log, logcnt


# docs/cost-model.md: on the deployment shapes, with a layer's hottest expert in up to ~80% of
# tokens, a window's nodes per token within 2.5% of exact routing, its communication time within 5%.
NODES_BOUND, COMMUNICATION_BOUND = 0.025, 0.05


@pytest.mark.parametrize("shape, costs, hierarchical", [
    (DEEPSEEK_V3_PREFILL, DEEPSEEK_V3, True),
    (DEEPSEEK_V3_PREFILL, DEEPSEEK_V3, False),
    (DEEPSEEK_V3_DECODE, DEEPSEEK_V3, False),
    (QWEN3_235B, QWEN3_235B_A22B, False),
    (QWEN3_30B, QWEN3_30B_A3B, True),
])
def test_approximation_stays_within_the_documented_bound(shape: Shape, costs: DeploymentCosts,
                                                         hierarchical: bool) -> None:
    shape = replace(shape, num_layers=2)
    _, phy2log, logcnt = _seed_window(shape, seed=3, hierarchical=hierarchical, sigma=2.0)
    generator = torch.Generator().manual_seed(4)
    logits = 2.0 * torch.randn(shape.num_layers, shape.num_experts, generator=generator, dtype=torch.float64)
    exact = cost_model.simulate_routing(logits, 4096, phy2log, logcnt, shape, costs, generator)
    node_touch, gpu_touch = cost_model.touch_probabilities(exact.loads, phy2log, logcnt, shape, costs)
    tokens = exact.loads.sum(-1).double() / costs.experts_per_token
    modelled = cost_model.communication_seconds(tokens, node_touch, gpu_touch, shape, costs).sum()
    measured = cost_model.communication_seconds(tokens, exact.node_touch, exact.gpu_touch, shape, costs).sum()
    nodes_error = node_touch.sum(-1).mean() / exact.node_touch.sum(-1).mean() - 1
    assert abs(nodes_error.item()) <= NODES_BOUND
    assert abs((modelled / measured - 1).item()) <= COMMUNICATION_BOUND


def test_simulated_routing_respects_the_group_limit() -> None:
    # One group per node on eight nodes: a token's 4 groups touch at most 4 nodes (a picked group
    # rarely supplies none); without the limit its 8 experts land on ~5.3 of the 8.
    shape = Shape(1, 256, 256, 8, 8, 8)
    phy2log = torch.arange(256).unsqueeze(0)
    logits = torch.zeros(1, 256, dtype=torch.float64)
    for groups_per_token, low, high in ((4, 3.8, 4.0), (8, 5.0, 5.6)):
        costs = replace(DEEPSEEK_V3, groups_per_token=groups_per_token)
        exact = cost_model.simulate_routing(logits, 4096, phy2log, _logcnt(phy2log, 256), shape, costs,
                                            torch.Generator().manual_seed(6))
        assert exact.loads.sum().item() == 4096 * 8
        assert low <= exact.node_touch.sum().item() <= high
        assert exact.gpu_touch.tolist() == exact.node_touch.tolist()  # one GPU per node


def test_hierarchical_placement_keeps_tokens_on_fewer_nodes_than_global() -> None:
    # DeepSeek-V3 prefill: the seed packs whole groups onto nodes (hierarchical); forced global
    # (one group, one node) it spreads a token's groups over all four nodes.
    windows = suite("quick")[0].search_windows()
    shape = DEEPSEEK_V3_PREFILL
    costs = {}
    for name, groups, nodes in (("hierarchical", 8, 4), ("global", 1, 1)):
        phy2log, _, logcnt = rebalance_experts(windows[0], shape.num_replicas, groups, nodes, shape.num_gpus)
        costs[name] = window_cost(windows[1], phy2log, logcnt, None, shape, DEEPSEEK_V3)
    assert costs["hierarchical"].nodes_per_token < costs["global"].nodes_per_token - 0.3
    assert costs["hierarchical"].communication_ms < costs["global"].communication_ms
