"""Metric definitions on hand-computed examples."""
import math

import pytest
import torch

from evaluator.scoring import metrics


def _t(rows):
    return torch.tensor(rows, dtype=torch.int64)


def test_gpu_and_slot_balancedness_hand_computed():
    window = _t([[4, 2, 1, 1]])
    phy2log = _t([[0, 1, 2, 3]])
    logcnt = _t([[1, 1, 1, 1]])
    gpu, slot = metrics.placement_balancedness(window, phy2log, logcnt, num_gpus=2)
    assert gpu == pytest.approx(4 / 6)  # GPU loads [6, 2]: mean 4, max 6
    assert slot == pytest.approx(2 / 4)  # slot loads [4, 2, 1, 1]: mean 2, max 4


def test_replicas_split_load_evenly():
    window = _t([[6, 2]])
    phy2log = _t([[0, 0, 1]])
    logcnt = _t([[2, 1]])
    slots = metrics.slot_loads(window, phy2log, logcnt)
    assert slots.tolist() == [[3.0, 3.0, 2.0]]
    gpu, _ = metrics.placement_balancedness(window, phy2log, logcnt, num_gpus=3)
    assert gpu == pytest.approx((8 / 3) / 3)


def test_balancedness_is_a_ratio_of_sums_not_a_mean_of_ratios():
    loads = torch.tensor([[6.0, 2.0], [1.0, 1.0]])
    assert metrics.balancedness(loads) == pytest.approx((4 + 1) / (6 + 1))
    assert metrics.balancedness(loads) != pytest.approx((4 / 6 + 1) / 2)


def test_all_zero_window_counts_as_balanced():
    assert metrics.balancedness(torch.zeros(2, 4)) == 1.0


def test_min_max_replica_load_matches_dhondt():
    window = _t([[6, 2], [10, 1]])
    assert metrics.min_max_replica_load(window, 3).tolist() == pytest.approx([3.0, 5.0])
    assert metrics.min_max_replica_load(window, 4).tolist() == pytest.approx([2.0, 10 / 3])


def test_bound_uses_the_larger_of_mean_and_replica_floor():
    # No redundancy: the hot expert (10) sets the floor, far above the mean (3.25).
    assert metrics.bound_balancedness(_t([[10, 1, 1, 1]]), 4, 4) == pytest.approx(3.25 / 10)
    # Enough replicas: the mean is reachable.
    assert metrics.bound_balancedness(_t([[6, 2]]), 4, 2) == pytest.approx(1.0)


def test_combined_score_is_bounded_and_rewards_speed_mildly():
    assert metrics.combined_score(0.8, 0.3, 10.0) == pytest.approx(0.8 * 10 / 10.3)
    assert metrics.combined_score(0.8, 0.0, 10.0) == pytest.approx(0.8)
    assert metrics.combined_score(0.8, 1e-9, 10.0) <= 0.8
    assert metrics.combined_score(0.8, 1e6, 10.0) > 0.0


def test_coefficient_of_variation():
    assert metrics.coefficient_of_variation([1.0, 1.0, 1.0]) == 0.0
    assert metrics.coefficient_of_variation([1.0, 3.0]) == pytest.approx(math.sqrt(2) / 2)
    assert metrics.median([3.0, 1.0, 2.0]) == 2.0
