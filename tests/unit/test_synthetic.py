"""The synthetic generator: deterministic, prefix-stable, and shaped like real MoE routing."""
from __future__ import annotations

import numpy as np
import pytest

from evaluator.workloads import published, synthetic
from evaluator.workloads.synthetic import HELDOUT_STREAM, SEARCH_STREAM, SyntheticSource, TraceParams, generate_windows

PARAMS = TraceParams(tokens_per_step=1024, steps_per_window=20, batch_steps=5)
LAYERS, EXPERTS = 6, 64


def windows(seed: int = 7, stream: int = SEARCH_STREAM, count: int = 30, params: TraceParams = PARAMS,
            secret: int | None = None) -> np.ndarray:
    return generate_windows(params, LAYERS, EXPERTS, seed, stream, count, secret)


def log_mean_load(stack: np.ndarray) -> np.ndarray:
    """[L * E] log of each expert's load summed over the windows: the fixed popularity, mostly."""
    return np.log1p(stack.sum(0)).ravel()


def test_same_seed_gives_bit_identical_windows_even_when_regenerated() -> None:
    first = windows().copy()
    synthetic._generated.cache_clear()
    again = windows()
    assert first.dtype == np.int64 and first.shape == (30, LAYERS, EXPERTS)
    np.testing.assert_array_equal(first, again)


def test_a_shorter_trace_is_a_prefix_of_a_longer_one() -> None:
    np.testing.assert_array_equal(windows(count=12), windows(count=30)[:12])


def test_seeds_streams_and_secrets_give_different_windows() -> None:
    assert not np.array_equal(windows(seed=7), windows(seed=8))
    assert not np.array_equal(windows(stream=SEARCH_STREAM), windows(stream=HELDOUT_STREAM))
    assert not np.array_equal(windows(), windows(secret=5))
    assert not np.array_equal(windows(secret=5), windows(secret=6))
    assert not np.array_equal(windows(seed=7, secret=8), windows(seed=8, secret=7))


def test_a_secret_gives_bit_identical_windows_and_keeps_the_prefix_property() -> None:
    first = windows(secret=2**63 + 11).copy()
    synthetic._generated.cache_clear()
    np.testing.assert_array_equal(windows(secret=2**63 + 11), first)
    np.testing.assert_array_equal(windows(secret=2**63 + 11, count=12), first[:12])


@pytest.mark.parametrize("label, other", [
    ("held-out stream", lambda: windows(stream=HELDOUT_STREAM)),
    ("secret stream", lambda: windows(secret=123)),
    ("fresh stream", lambda: SyntheticSource(PARAMS, LAYERS, EXPERTS, 7, 30, 8).fresh(nonce=99, count=30)),
])
def test_other_streams_are_the_same_deployment(label: str, other) -> None:
    """Same fixed popularity: hot experts of the search windows are hot in the other stream too."""
    search = log_mean_load(windows(stream=SEARCH_STREAM))
    same = np.corrcoef(search, log_mean_load(other()))[0, 1]
    assert same > 0.8, label
    assert same > np.corrcoef(search, log_mean_load(windows(seed=8)))[0, 1] + 0.5, label


def test_fresh_streams_are_new_windows_that_a_nonce_reproduces() -> None:
    source = SyntheticSource(PARAMS, LAYERS, EXPERTS, 7, 10, 4, secret=3)
    fresh = source.fresh(nonce=3, count=10)
    assert fresh.shape == (10, LAYERS, EXPERTS) and fresh.dtype == np.int64
    np.testing.assert_array_equal(source.fresh(nonce=3, count=10), fresh)
    assert not np.array_equal(source.fresh(nonce=4, count=10), fresh)
    for stream in (source.search(), source.heldout(), windows(stream=3, count=10)):  # bench_baselines' stream 3
        assert not np.array_equal(stream[:2], fresh[:2])


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


def test_published_source_reads_the_shipped_windows_and_popularity(monkeypatch) -> None:
    source = SyntheticSource(TraceParams(), 12, 128, 3, 12, 4, published="qwen3-30b-a3b-12l")
    shipped = published.load("qwen3-30b-a3b-12l")
    monkeypatch.setattr(synthetic, "simulate", None)  # reading must not generate
    np.testing.assert_array_equal(source.search(), shipped.search)
    np.testing.assert_array_equal(source.heldout(), shipped.heldout)
    assert source.base() is shipped.base


def test_secret_and_fresh_streams_of_a_published_source_use_the_shipped_popularity(monkeypatch) -> None:
    """Another NumPy may draw another popularity from the seed; the shipped one keeps the deployment fixed."""
    shipped = published.load("qwen3-30b-a3b-12l").base.ravel()
    monkeypatch.setattr(synthetic, "base_popularity", lambda *args: -published.load("qwen3-30b-a3b-12l").base)
    synthetic._generated.cache_clear()
    source = SyntheticSource(TraceParams(), 12, 128, 3, 12, 4, secret=1, published="qwen3-30b-a3b-12l")
    assert np.corrcoef(log_mean_load(source.search()), shipped)[0, 1] > 0.5  # the patched one gives < -0.5
    assert np.corrcoef(log_mean_load(source.fresh(1, 12)), shipped)[0, 1] > 0.5


def test_a_published_source_asked_for_more_windows_than_shipped_says_how_to_regenerate() -> None:
    source = SyntheticSource(TraceParams(), 12, 128, 3, 13, 4, published="qwen3-30b-a3b-12l")
    with pytest.raises(RuntimeError, match=r"holds 12 windows of stream 1, 13 asked for; regenerate it with "
                                           r"bench/make_published_windows.py"):
        source.search()


def test_published_files_round_trip_counts_exactly(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(published, "PUBLISHED_DIR", tmp_path)
    base = np.random.default_rng(0).standard_normal((3, 8))
    search = np.random.default_rng(1).integers(0, 2**32, size=(4, 3, 8))
    heldout = np.array([[[0, 1, 255, 256, 65535, 65536, 2**24, 2**32 - 1]] * 3])
    published.save("tiny", base, search, heldout)
    shipped = published.load("tiny")
    np.testing.assert_array_equal(shipped.base, base)
    np.testing.assert_array_equal(shipped.search, search)
    np.testing.assert_array_equal(shipped.heldout, heldout)
    assert shipped.search.dtype == np.int64 and not shipped.search.flags.writeable
    with pytest.raises(ValueError, match="tiny search windows do not fit uint32"):
        published.save("tiny", base, search + 2**32, heldout)
