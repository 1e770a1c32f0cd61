"""Baselines: the vectorised seed is the seed exactly; the forecast baseline is valid and better out of sample."""
from __future__ import annotations

import copy
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from paths import REPO
from reference_eplb import check_placement, degenerate_loads, random_shape, random_weight

from evaluator.baselines import forecast_lpt, vectorized_seed
from evaluator.scoring.metrics import placement_balancedness
from seed_program.eplb import rebalance_experts as seed

# (L, E, R, groups, nodes, gpus) of the default suite's deployments.
DEEPSEEK_V3_PREFILL = (58, 256, 288, 8, 4, 32)
DEEPSEEK_V3_DECODE = (58, 256, 288, 8, 18, 144)
QWEN3_30B = (48, 128, 160, 1, 1, 8)
QWEN3_235B = (94, 128, 160, 1, 4, 32)


@pytest.fixture(autouse=True)
def fresh_history() -> None:
    """forecast_lpt keeps a history per deployment between calls: every test starts without one."""
    forecast_lpt.reset_history()


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
    weight = degenerate_loads()
    for num_replicas, num_gpus in ((8, 1), (8, 4), (16, 8), (24, 12), (40, 2)):
        for scale in (1.0, -1.0, 1.0, 1e-300):  # with a history of the same (or sign-flipped) loads
            check_placement(*forecast_lpt.rebalance_experts(weight * scale, num_replicas, 1, 1, num_gpus), 8)


def test_forecast_lpt_ignores_the_scale_of_the_loads() -> None:
    # Token counts, fractions of the layer and huge floats are the same forecast.
    # Also with a history: the same windows at another scale continue it the same way.
    windows = drifting_windows(QWEN3_235B, 2, 3)
    expected = [forecast_lpt.rebalance_experts(w, 160, 1, 4, 32) for w in windows]
    for scale in (lambda w: w.double() / w.sum(-1, keepdim=True), lambda w: w.double() * 1e200):
        forecast_lpt.reset_history()
        for window, want in zip(windows, expected):
            got = forecast_lpt.rebalance_experts(scale(window), 160, 1, 4, 32)
            assert all(torch.equal(a, b) for a, b in zip(got, want))


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
    # of the i-th heaviest and the i-th lightest forecast replica loads (here a forecast with history).
    history = drifting_windows(DEEPSEEK_V3_DECODE, 3, 2)
    forecast_lpt.rebalance_experts(history[0][:5], 288, 8, 18, 144)
    state = copy.copy(forecast_lpt._HISTORY[(5, 256, 288, 8, 18, 144)])  # update() replaces, never mutates, tensors
    forecast = state.update(forecast_lpt._log_loads(history[1][:5]))
    phy2log, _, logcnt = forecast_lpt.rebalance_experts(history[1][:5], 288, 8, 18, 144)
    replica = (forecast.exp() / logcnt).gather(-1, phy2log)
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
    # Going global frees the placement from whole groups per node, and the history sharpens the
    # forecast; measured +0.014 here (+0.026 on the default suite's search windows).
    assert next_window_gain(DEEPSEEK_V3_PREFILL, pairs=8) > 0.005


@pytest.mark.parametrize("shape", [DEEPSEEK_V3_DECODE, QWEN3_30B, QWEN3_235B])
def test_forecast_lpt_beats_the_seed_on_global_shapes(shape: tuple[int, ...]) -> None:
    # Here the placement is close to the seed's and only the forecast gains: measured +0.016,
    # +0.005 and +0.009 over these 4 pairs (+0.005 to +0.017 on the default suite's extra
    # streams). Guards against a forecast that hurts: SHRINK = 0.7 (the filter's prior) gives
    # +0.003, -0.005 and +0.002.
    assert next_window_gain(shape, pairs=4) > 0.0025


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
    # Two windows in a row, so that forecast_lpt's history is exercised on CUDA input too.
    windows = [torch.rand(4, 64, generator=torch.Generator().manual_seed(s)) for s in (4, 5)]
    windows[1] = windows[0] * (1 + 0.1 * windows[1])  # the same workload a window later
    expected = [program(w, 96, 8, 4, 16) for w in windows]
    forecast_lpt.reset_history()
    for weight, want in zip(windows, expected):
        assert all(torch.equal(a, b) for a, b in zip(program(weight.cuda(), 96, 8, 4, 16), want))


# -- history between calls (forecast_lpt forecasts from the past windows of the same deployment) --

def evaluator_sequence(windows: list[torch.Tensor], shape: tuple[int, ...]) -> list[tuple[torch.Tensor, ...]]:
    """forecast_lpt's answers to the evaluator's calls: window 0 reversed (warm-up), then the windows in order."""
    args = shape[2:]
    return [forecast_lpt.rebalance_experts(w, *args) for w in [windows[0].flip(-1).contiguous(), *windows]]


def fresh_answer(weight: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """What a process without history answers, leaving the current history as it was."""
    saved = dict(forecast_lpt._HISTORY)
    forecast_lpt.reset_history()
    answer = forecast_lpt.rebalance_experts(weight, *shape[2:])
    forecast_lpt._HISTORY.clear()
    forecast_lpt._HISTORY.update(saved)
    return answer


def same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_fresh_history_forecasts_the_window_to_the_power_shrink() -> None:
    weight = drifting_windows(QWEN3_30B, 4, 1)[0].double()
    forecast = forecast_lpt._forecast(weight, ("test",))
    expected = (weight / weight.amax(-1, keepdim=True) + forecast_lpt.LOG_FLOOR) ** forecast_lpt.SHRINK
    assert torch.allclose(forecast, expected / expected.amax(-1, keepdim=True), rtol=1e-9)


def test_history_is_used_for_the_same_deployment_only() -> None:
    w0, w1 = drifting_windows(DEEPSEEK_V3_DECODE, 5, 2)
    forecast_lpt.rebalance_experts(w0, *DEEPSEEK_V3_DECODE[2:])
    # Same weight shape, other GPU count (DeepSeek-V3 prefill vs decode): no history.
    assert same(forecast_lpt.rebalance_experts(w1, *DEEPSEEK_V3_PREFILL[2:]), fresh_answer(w1, DEEPSEEK_V3_PREFILL))
    # Same deployment: the history changes the answer.
    assert not same(forecast_lpt.rebalance_experts(w1, *DEEPSEEK_V3_DECODE[2:]), fresh_answer(w1, DEEPSEEK_V3_DECODE))


def test_an_unrelated_window_restarts_the_history() -> None:
    windows = drifting_windows(QWEN3_30B, 6, 3)
    other_workload = drifting_windows(QWEN3_30B, 7, 1)[0]
    for w in windows:
        forecast_lpt.rebalance_experts(w, *QWEN3_30B[2:])
    for unrelated in (windows[-1].flip(-1).contiguous(), other_workload, torch.zeros_like(other_workload)):
        expected = fresh_answer(unrelated, QWEN3_30B)
        assert same(forecast_lpt.rebalance_experts(unrelated, *QWEN3_30B[2:]), expected)


def test_the_reversed_warm_up_does_not_leak_into_the_first_window() -> None:
    windows = drifting_windows(QWEN3_235B, 8, 4)
    answers = evaluator_sequence(windows, QWEN3_235B)
    for answer in answers:
        check_placement(*answer, QWEN3_235B[1])
    assert same(answers[1], fresh_answer(windows[0], QWEN3_235B))
    assert not same(answers[2], fresh_answer(windows[1], QWEN3_235B))


def test_reset_history_answers_like_a_fresh_process(tmp_path: Path) -> None:
    windows = drifting_windows(QWEN3_30B, 9, 3)
    torch.save(windows, tmp_path / "windows.pt")
    root = REPO
    script = (f"import sys, torch; sys.path.insert(0, {str(root)!r})\n"
              "from evaluator.baselines import forecast_lpt as f\n"
              f"w = torch.load({str(tmp_path / 'windows.pt')!r})\n"
              f"torch.save([f.rebalance_experts(x, *{QWEN3_30B[2:]!r}) for x in [w[0].flip(-1).contiguous(), *w]],"
              f" {str(tmp_path / 'answers.pt')!r})\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    expected = torch.load(tmp_path / "answers.pt")
    evaluator_sequence(drifting_windows(QWEN3_30B, 10, 3), QWEN3_30B)  # some other history first
    forecast_lpt.reset_history()
    assert all(same(a, b) for a, b in zip(evaluator_sequence(windows, QWEN3_30B), expected, strict=True))


def test_a_layer_whose_traffic_shifted_follows_its_new_window() -> None:
    # After a few windows of one workload, layer 0's experts swap popularity (a traffic shift)
    # while the other layers go on: the history is kept, but layer 0's forecast is this window's.
    windows = drifting_windows(QWEN3_30B, 11, 5)
    shifted = windows[4].clone()
    shifted[0] = shifted[0].flip(-1)
    for w in windows[:4]:
        forecast_lpt._forecast(w, ("test",))
    forecast = forecast_lpt._forecast(shifted, ("test",)).log()
    new_logs = forecast_lpt._log_loads(shifted)

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    assert forecast_lpt._HISTORY[("test",)].windows == 5  # not restarted
    assert corr(forecast[0], new_logs[0]) > 0.99
    assert corr(forecast[1], forecast_lpt._log_loads(windows[3])[1]) > 0.95


def test_history_beats_one_window_on_deepseek_v3_decode() -> None:
    # Decode's two slots per GPU leave only the forecast to improve on (the placement is the
    # seed's): the history removes batch noise one window cannot. Measured +0.019 over the
    # one-window forecast on these windows (+0.019 to +0.021 on seeds 12-14, every pair but the first,
    # which has no history, gained).
    windows = drifting_windows(DEEPSEEK_V3_DECODE, 12, 11)
    gpus = DEEPSEEK_V3_DECODE[-1]
    with_history = evaluator_sequence(windows, DEEPSEEK_V3_DECODE)[1:]
    gain = 0.0
    for fit, score, answer in zip(windows, windows[1:], with_history):
        alone = fresh_answer(fit, DEEPSEEK_V3_DECODE)
        gain += (placement_balancedness(score, answer[0], answer[2], gpus)[0]
                 - placement_balancedness(score, alone[0], alone[2], gpus)[0])
    assert gain / 10 > 0.01
