"""The synthetic generator: deterministic, prefix-stable, and shaped like real MoE routing."""
from __future__ import annotations

import numpy as np
import pytest

from evaluator.workloads import synthetic
from evaluator.workloads.synthetic import HELDOUT_STREAM, SEARCH_STREAM, SyntheticSource, TraceParams, generate_windows

PARAMS = TraceParams(tokens_per_step=1024, steps_per_window=20, batch_steps=5)
LAYERS, EXPERTS = 6, 64


def windows(seed: int = 7, stream: int = SEARCH_STREAM, count: int = 30, params: TraceParams = PARAMS) -> np.ndarray:
    return generate_windows(params, LAYERS, EXPERTS, seed, stream, count)


def test_same_seed_gives_bit_identical_windows_even_when_regenerated() -> None:
    first = windows().copy()
    synthetic._cached_windows.cache_clear()
    again = windows()
    assert first.dtype == np.int64 and first.shape == (30, LAYERS, EXPERTS)
    np.testing.assert_array_equal(first, again)


def test_a_shorter_trace_is_a_prefix_of_a_longer_one() -> None:
    np.testing.assert_array_equal(windows(count=12), windows(count=30)[:12])


def test_seeds_and_streams_give_different_windows() -> None:
    assert not np.array_equal(windows(seed=7), windows(seed=8))
    assert not np.array_equal(windows(stream=SEARCH_STREAM), windows(stream=HELDOUT_STREAM))


def test_held_out_stream_is_the_same_deployment() -> None:
    """Same fixed popularity: hot experts of the search windows are hot in the held-out ones too."""
    search = np.log1p(windows(stream=SEARCH_STREAM).sum(0))
    heldout = np.log1p(windows(stream=HELDOUT_STREAM).sum(0))
    other = np.log1p(windows(seed=8).sum(0))
    same = np.corrcoef(search.ravel(), heldout.ravel())[0, 1]
    assert same > 0.8
    assert same > np.corrcoef(search.ravel(), other.ravel())[0, 1] + 0.5


def test_every_layer_routes_all_tokens_top_k_times() -> None:
    totals = windows().sum(-1)  # [W, L]: one forward pass routes every token through every layer
    assert (totals == totals[:, :1]).all()
    assert (totals % PARAMS.top_k == 0).all()
    assert abs(totals.mean() / (PARAMS.top_k * PARAMS.tokens_per_step * PARAMS.steps_per_window) - 1) < 0.1


def test_popularity_is_heavy_tailed_and_differs_per_layer() -> None:
    share = windows().sum(0) / windows().sum((0, 2))[:, None]  # [L, E]
    peak = share.max(1) * EXPERTS  # hottest expert relative to the mean
    assert (peak > 2.5).all()
    assert peak.max() / peak.min() > 1.2  # layers differ in skew


def test_loads_drift_so_near_windows_resemble_each_other_more_than_far_ones() -> None:
    logs = np.log1p(windows(count=60).astype(float))
    centred = logs - logs.mean(0)  # remove the fixed popularity, keep the drift and noise

    def corr(lag: int) -> float:
        return float(np.mean([np.corrcoef(centred[i].ravel(), centred[i + lag].ravel())[0, 1]
                              for i in range(60 - lag)]))

    assert corr(1) > 0.3
    assert corr(1) > corr(30) + 0.2


def test_batch_noise_is_what_makes_consecutive_windows_differ() -> None:
    calm = TraceParams(tokens_per_step=1024, steps_per_window=20, batch_steps=5, batch_sigma=0.0,
                       drift_sigma=0.0, shift_prob=0.0)
    change = [np.abs(np.diff(w.astype(float), axis=0)).sum() / w[1:].sum() for w in (windows(), windows(params=calm))]
    assert change[0] > 3 * change[1]


def test_windows_are_read_only() -> None:
    with pytest.raises(ValueError):
        windows()[0, 0, 0] = 0


def test_source_splits_into_search_and_heldout_streams() -> None:
    source = SyntheticSource(PARAMS, LAYERS, EXPERTS, seed=7, num_search=10, num_heldout=4)
    np.testing.assert_array_equal(source.search(), windows(count=10))
    np.testing.assert_array_equal(source.heldout(), windows(stream=HELDOUT_STREAM, count=4))


def test_inconsistent_params_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_steps=7 must divide steps_per_window=100"):
        TraceParams(batch_steps=7)
    with pytest.raises(ValueError, match="drift_rho"):
        TraceParams(drift_rho=1.0)
