"""Baselines: the vectorised seed is the seed exactly; the forecast baseline is valid and better out of sample."""
from __future__ import annotations

import math
import random

import pytest
import torch
from reference_eplb import check_placement, random_shape, random_weight

from evaluator.baselines import forecast_lpt, vectorized_seed
from evaluator.metrics import placement_balancedness
from seed_program.eplb import rebalance_experts as seed

# (L, E, R, groups, nodes, gpus) of the default suite's deployments.
DEEPSEEK_V3_PREFILL = (58, 256, 288, 8, 4, 32)
DEEPSEEK_V3_DECODE = (58, 256, 288, 8, 18, 144)
QWEN3_30B = (48, 128, 160, 1, 1, 8)
QWEN3_235B = (94, 128, 160, 1, 4, 32)


def drifting_windows(shape: tuple[int, ...], seed_value: int, count: int) -> list[torch.Tensor]:
    """`count` consecutive [L, E] token-count windows of a heavy-tailed, drifting, mean-reverting load.

    Per layer: fixed lognormal popularity (skew 0.3-0.75), an AR(1) drift (sigma 0.2, rho 0.85)
    and per-window batch noise, like real serving traffic (and the default suite's traces).
    """
    num_layers, num_experts = shape[:2]
    gen = torch.Generator().manual_seed(seed_value)

    def normal(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen, dtype=torch.float64)

    skew = 0.3 + 0.45 * torch.rand(num_layers, 1, generator=gen, dtype=torch.float64)
    base = skew * normal(num_layers, num_experts)
    drift = 0.2 * normal(num_layers, num_experts)
    windows = []
    for _ in range(count):
        batches = base + drift + 0.4 * normal(10, num_layers, num_experts)
        windows.append(torch.round(torch.softmax(batches, -1).mean(0) * 800_000).long())
        drift = 0.85 * drift + math.sqrt(1 - 0.85**2) * 0.2 * normal(num_layers, num_experts)
    return windows


def next_window_gain(shape: tuple[int, ...], pairs: int) -> float:
    """Mean over fit/score pairs of forecast_lpt's minus the seed's GPU-level balancedness on the next window.

    The seed's placements come from the vectorised seed (the seed exactly, tested above), for speed.
    """
    *_, num_replicas, groups, nodes, gpus = shape
    windows = drifting_windows(shape, 0, pairs + 1)
    gain = 0.0
    for fit, score in zip(windows, windows[1:]):
        for sign, program in ((1, forecast_lpt.rebalance_experts), (-1, vectorized_seed.rebalance_experts)):
            phy2log, _, logcnt = program(fit, num_replicas, groups, nodes, gpus)
            gain += sign * placement_balancedness(score, phy2log, logcnt, gpus)[0]
    return gain / pairs


@pytest.mark.parametrize("seed_value", range(3))
def test_vectorized_seed_is_the_seed_on_random_inputs(seed_value: int) -> None:
    rng = random.Random(100 + seed_value)
    gen = torch.Generator().manual_seed(seed_value)
    for trial in range(60):
        num_layers, num_experts, num_replicas, groups, nodes, gpus = random_shape(rng)
        weight = random_weight(trial % 4, (num_layers * 3, num_experts), gen)
        expected = seed(weight, num_replicas, groups, nodes, gpus)
        phy2log, log2phy, logcnt = vectorized_seed.rebalance_experts(weight, num_replicas, groups, nodes, gpus)
        case = (trial, weight.shape, num_replicas, groups, nodes, gpus, weight.dtype)
        assert torch.equal(phy2log, expected[0]) and torch.equal(logcnt, expected[2]), case
        check_placement(phy2log, log2phy, logcnt, num_experts)


@pytest.mark.parametrize("shape", [DEEPSEEK_V3_PREFILL, DEEPSEEK_V3_DECODE])
def test_vectorized_seed_is_the_seed_on_deepseek_shapes(shape: tuple[int, ...]) -> None:
    num_layers, num_experts, *args = shape
    gen = torch.Generator().manual_seed(7)
    # Realistic counts, counts large enough to round in float32, and tie-heavy layers.
    weight = torch.cat([
        drifting_windows(shape, 1, 1)[0][:3],
        torch.randint(0, 3_000_000, (2, num_experts), generator=gen),
        torch.randint(0, 3, (2, num_experts), generator=gen),
    ])
    phy2log, log2phy, logcnt = vectorized_seed.rebalance_experts(weight, *args)
    expected = seed(weight, *args)
    assert torch.equal(phy2log, expected[0]) and torch.equal(logcnt, expected[2])
    check_placement(phy2log, log2phy, logcnt, num_experts)


def test_forecast_lpt_is_valid_on_random_inputs() -> None:
    rng = random.Random(5)
    gen = torch.Generator().manual_seed(5)
    for trial in range(40):
        num_layers, num_experts, num_replicas, groups, nodes, gpus = random_shape(rng)
        weight = random_weight(trial % 4, (num_layers, num_experts), gen)
        phy2log, log2phy, logcnt = forecast_lpt.rebalance_experts(weight, num_replicas, groups, nodes, gpus)
        assert phy2log.shape == (num_layers, num_replicas)
        assert log2phy.shape == (num_layers, num_experts, num_replicas - num_experts + 1)
        check_placement(phy2log, log2phy, logcnt, num_experts)


def test_forecast_lpt_is_valid_on_degenerate_loads() -> None:
    # NaN, infinities, negatives, all-zero layers, one expert with everything, R = E and one GPU.
    weight = torch.tensor([
        [float("nan"), 1.0, 2.0, 3.0, -4.0, 5.0, 6.0, 7.0],
        [float("inf"), 1.0, 0.0, 3.0, float("-inf"), 5.0, 6.0, 7.0],
        [0.0] * 8,
        [0.0] * 7 + [1e300],
    ], dtype=torch.float64)
    for num_replicas, num_gpus in ((8, 1), (8, 4), (16, 8), (24, 12), (40, 2)):
        check_placement(*forecast_lpt.rebalance_experts(weight, num_replicas, 1, 1, num_gpus), 8)


def test_forecast_lpt_ignores_the_scale_of_the_loads() -> None:
    # Token counts, fractions of the layer and huge floats are the same forecast.
    counts = drifting_windows(QWEN3_235B, 2, 1)[0][:4]
    expected = forecast_lpt.rebalance_experts(counts, 160, 1, 4, 32)
    for scaled in (counts / counts.sum(-1, keepdim=True), counts.double() * 1e200):
        got = forecast_lpt.rebalance_experts(scaled, 160, 1, 4, 32)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_forecast_lpt_without_forecast_is_the_seed_global_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    # With SHRINK = 1 it is D'Hondt + LPT over all GPUs: the same replica counts and every GPU
    # holds the same experts as under the seed's global policy (within a GPU the slot order may
    # differ): round-by-round LPT gives item-by-item LPT's packing here.
    monkeypatch.setattr(forecast_lpt, "SHRINK", 1.0)
    weight = torch.rand(6, 64, generator=torch.Generator().manual_seed(9))
    for num_replicas, num_gpus in ((64, 8), (80, 16), (96, 48)):
        ours = forecast_lpt.rebalance_experts(weight, num_replicas, 3, 2, num_gpus)
        theirs = seed(weight, num_replicas, 3, 2, num_gpus)  # 3 % 2 != 0: global policy
        per_gpu = (6, num_gpus, num_replicas // num_gpus)
        assert torch.equal(ours[2], theirs[2])
        assert torch.equal(ours[0].view(per_gpu).sort(-1).values, theirs[0].view(per_gpu).sort(-1).values)


def test_two_slots_per_gpu_pair_the_heaviest_replica_with_the_lightest() -> None:
    # Optimal in sample for two items per GPU, and what LPT does: the GPU loads are the sums
    # of the i-th heaviest and the i-th lightest forecast replica loads.
    weight = drifting_windows(DEEPSEEK_V3_DECODE, 3, 1)[0][:5]
    phy2log, _, logcnt = forecast_lpt.rebalance_experts(weight, 288, 8, 18, 144)
    replica = (weight.double() ** forecast_lpt.SHRINK / logcnt).gather(-1, phy2log)
    ranked = replica.sort(-1, descending=True).values
    folded = ranked[:, :144] + ranked[:, 144:].flip(-1)
    gpu = replica.view(5, 144, 2).sum(-1)
    assert torch.allclose(gpu.sort(-1).values, folded.sort(-1).values, rtol=1e-12)


def test_forecast_gives_the_hottest_expert_fewer_replicas_than_the_past_would() -> None:
    weight = torch.tensor([[1000, 100, 90, 80, 70, 60, 50, 40]])
    _, _, logcnt = forecast_lpt.rebalance_experts(weight, 16, 1, 1, 4)
    _, _, past = seed(weight, 16, 1, 1, 4)
    assert logcnt[0, 0] < past[0, 0]
    assert int(logcnt.sum()) == 16


def test_forecast_lpt_beats_the_seed_on_deepseek_v3_prefill() -> None:
    # Going global frees the placement from whole groups per node; measured about +0.007 here
    # (+0.015 on the default suite's search windows, +0.008 on its held-out ones).
    assert next_window_gain(DEEPSEEK_V3_PREFILL, pairs=8) > 0.003


@pytest.mark.parametrize("shape", [DEEPSEEK_V3_DECODE, QWEN3_30B, QWEN3_235B])
def test_forecast_lpt_is_no_worse_than_the_seed_on_global_shapes(shape: tuple[int, ...]) -> None:
    # On these shapes the expected gain is +0.001 to +0.004 (measured over 348 window pairs of
    # the default suite's workloads), below the window-to-window noise of a few pairs, so this
    # only guards against a forecast that hurts: SHRINK = 0.8 loses 0.003 to 0.005 here and
    # SHRINK = 0.7 0.01 to 0.02.
    assert next_window_gain(shape, pairs=4) > -0.002


@pytest.mark.parametrize("program", [vectorized_seed.rebalance_experts, forecast_lpt.rebalance_experts])
def test_baselines_accept_any_dtype_and_reject_impossible_shapes(program) -> None:  # noqa: ANN001
    counts = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(3))
    outputs = [program(counts.to(dtype), 24, 4, 2, 4) for dtype in (torch.int64, torch.float16, torch.float64)]
    for got in outputs:
        check_placement(*got, 16)
        assert all(t.device.type == "cpu" for t in got)
    with pytest.raises(ValueError):
        program(torch.ones(2, 16), 12, 4, 2, 4)  # fewer slots than experts


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("program", [vectorized_seed.rebalance_experts, forecast_lpt.rebalance_experts])
def test_baselines_take_cuda_input(program) -> None:  # noqa: ANN001
    weight = torch.rand(4, 64, generator=torch.Generator().manual_seed(4))
    expected = program(weight, 96, 8, 4, 16)
    assert all(torch.equal(a, b) for a, b in zip(program(weight.cuda(), 96, 8, 4, 16), expected))
