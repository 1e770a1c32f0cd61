"""migration_aware: valid on every call, keeps the placement in force, node-aware, and its targets on `quick`."""
from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torch
from reference_eplb import check_placement, degenerate_loads, random_shape, random_weight

from evaluator.baselines import forecast_lpt, migration_aware, vectorized_seed
from evaluator.scoring import cost_model
from evaluator.scoring.metrics import placement_balancedness
from evaluator.workloads.deployment import default_costs
from evaluator.workloads.scenarios import Scenario, suite
from evaluator.workloads.shape import Shape

rebalance = migration_aware.rebalance_experts
QUICK = {scenario.name: scenario for scenario in suite("quick")}
PREFILL = QUICK["deepseek-v3-prefill-quick"]  # 8 groups on 4 nodes: node-aware
QWEN = QUICK["qwen3-30b-a3b-12l"]  # one group, one node: global


@pytest.fixture(autouse=True)
def fresh_memory() -> None:
    """Both programs keep history between calls: every test starts as a fresh process does."""
    migration_aware.reset_memory()
    forecast_lpt.reset_history()


def args(scenario: Scenario) -> tuple[int, int, int, int]:
    s = scenario.shape
    return s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus


def migrated(previous: torch.Tensor, current: torch.Tensor, shape: Shape) -> float:
    """Share of slots whose expert their GPU did not hold before: the cost model's migrated fraction."""
    return cost_model.migration(current, previous, shape, default_costs(shape))[1]


def test_valid_on_every_call_of_random_shapes_and_loads() -> None:
    # Tie-heavy small integers, all zeros, uniform floats, heavy-tailed halfs; each deployment
    # called three times (from scratch, from its own memory, from a placement passed in).
    rng = random.Random(11)
    gen = torch.Generator().manual_seed(11)
    for trial in range(40):
        num_layers, num_experts, num_replicas, groups, nodes, gpus = random_shape(rng)
        previous = None
        for call in range(3):
            weight = random_weight((trial + call) % 4, (num_layers, num_experts), gen)
            outputs = rebalance(weight, num_replicas, groups, nodes, gpus,
                                old_global_expert_indices=previous if call == 2 else None)
            assert outputs[0].shape == (num_layers, num_replicas)
            assert outputs[1].shape == (num_layers, num_experts, num_replicas - num_experts + 1)
            check_placement(*outputs, num_experts)
            previous = outputs[0]


def test_valid_on_degenerate_loads() -> None:
    # NaN, infinities, negatives, all-zero layers, one expert with everything; R = E and one GPU.
    weight = degenerate_loads()
    for num_replicas, num_gpus, groups, nodes in ((8, 1, 1, 1), (8, 4, 4, 2), (16, 8, 2, 2), (24, 12, 1, 3)):
        for scale in (1.0, -1.0, 1.0, 1e-300):
            check_placement(*rebalance(weight * scale, num_replicas, groups, nodes, num_gpus), 8)


def test_rejects_a_placement_in_force_of_the_wrong_shape() -> None:
    weight = torch.rand(2, 8, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError):
        rebalance(weight, 16, 1, 1, 4, old_global_expert_indices=torch.zeros(2, 12, dtype=torch.int64))
    with pytest.raises(ValueError):
        rebalance(weight, 16, 1, 1, 4, old_global_expert_indices=torch.full((2, 16), 8))


def test_the_first_call_places_from_scratch_and_balances() -> None:
    # No history and nothing in force: the same answer whatever was called before for another
    # deployment, and a placement balanced on its own window (the forecast is the window itself).
    prefill, qwen = PREFILL.search_windows()[0], QWEN.search_windows()[0]
    first = rebalance(prefill, *args(PREFILL))
    rebalance(qwen, *args(QWEN))
    migration_aware.reset_memory()
    rebalance(qwen, *args(QWEN))
    again = rebalance(prefill, *args(PREFILL))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    num_gpus = PREFILL.shape.num_gpus
    assert placement_balancedness(prefill, first[0], first[2], num_gpus)[0] > 0.9


@pytest.mark.parametrize("scenario", [PREFILL, QWEN], ids=lambda s: s.name)
def test_the_same_window_again_moves_nothing(scenario: Scenario) -> None:
    # Unchanged loads, unchanged forecast: the placement in force stays, slot for slot, whether
    # the program remembers it or is given it.
    window = scenario.search_windows()[0]
    first = rebalance(window, *args(scenario))[0]
    for old in (None, first, None):
        assert torch.equal(rebalance(window, *args(scenario), old_global_expert_indices=old)[0], first)


def test_keeps_the_experts_of_the_placement_in_force_it_is_given() -> None:
    # Another placement is in force (the seed's, ~80% of slots away from this program's own): the
    # next window re-places from it, not from the program's memory.
    windows = QWEN.search_windows()
    shape = QWEN.shape
    for window in windows[:3]:
        own = rebalance(window, *args(QWEN))[0]
    in_force = vectorized_seed.rebalance_experts(windows[2], *args(QWEN))[0]
    assert migrated(own, in_force, shape) > 0.5
    placed = rebalance(windows[3], *args(QWEN), old_global_expert_indices=in_force)[0]
    assert migrated(in_force, placed, shape) < 0.2
    assert migrated(own, placed, shape) > 0.5


def test_node_aware_keeps_each_group_on_one_node_and_global_does_not() -> None:
    # DeepSeek-V3 prefill (8 groups, 4 nodes): in every layer of every call all replicas of a
    # group sit on one node. With 3 nodes (8 % 3 != 0) the global policy spreads groups over nodes.
    windows = PREFILL.search_windows()[:6]
    for num_nodes, node_aware in ((4, True), (3, False)):
        migration_aware.reset_memory()
        num_gpus = 24 if num_nodes == 3 else 32
        num_replicas = 288
        for window in windows:
            phy2log = rebalance(window, num_replicas, 8, num_nodes, num_gpus)[0]
            node = (torch.arange(num_replicas) // (num_replicas // num_nodes)).expand_as(phy2log)
            group = phy2log // 32
            spread = torch.zeros(phy2log.shape[0], 8, num_nodes).index_put_(
                (torch.arange(phy2log.shape[0]).unsqueeze(-1).expand_as(phy2log), group, node),
                torch.ones(phy2log.shape), accumulate=True).gt(0).sum(-1)
            assert bool((spread == 1).all()) == node_aware


def evaluator_order(program: Callable[..., tuple[torch.Tensor, ...]], scenario: Scenario) -> tuple[float, float]:
    """(mean next-window GPU balancedness, mean migrated share) in the evaluator's call order.

    A warm-up on window 0 with its experts reversed, then windows 0..n-2, each placement scored on
    the next window; a program that takes it gets the placement in force, the warm-up's first.
    Migration counts from the warm-up's placement for window 0, as the evaluator would see it.
    """
    windows = scenario.search_windows()
    shape = scenario.shape
    takes_previous = program is rebalance
    previous = program(windows[0].flip(-1).contiguous(), *args(scenario))[0]
    balance, moved = [], []
    for fit, score in zip(windows[:-1], windows[1:]):
        extra = {"old_global_expert_indices": previous} if takes_previous else {}
        phy2log, _, logcnt = program(fit, *args(scenario), **extra)
        balance.append(placement_balancedness(score, phy2log, logcnt, shape.num_gpus)[0])
        moved.append(migrated(previous, phy2log, shape))
        previous = phy2log
    return sum(balance) / len(balance), sum(moved) / len(moved)


def test_quick_suite_targets() -> None:
    # Measured: DS-V3 prefill 0.810 balance, 16% migrated (seed 0.801, 92%; forecast_lpt 0.829,
    # 96%, but global: no node-aware target); Qwen3-30B 12 layers 0.923, 13% (forecast_lpt 0.921,
    # 83%). Window 0's move from the reversed warm-up (~90% of slots) is in the mean.
    ours = {name: evaluator_order(rebalance, scenario) for name, scenario in QUICK.items()}
    assert all(moved <= 0.20 for _, moved in ours.values())
    assert ours[QWEN.name][0] >= evaluator_order(forecast_lpt.rebalance_experts, QWEN)[0] - 0.005
    assert ours[PREFILL.name][0] >= evaluator_order(vectorized_seed.rebalance_experts, PREFILL)[0]
