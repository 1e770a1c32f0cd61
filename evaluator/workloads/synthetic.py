"""Synthetic MoE routing traces: per-expert load windows that behave like real serving traffic.

Real expert loads are heavy-tailed (a few experts per layer are many times hotter than the
mean), differ from layer to layer, drift as the traffic mix changes, sometimes shift abruptly,
and are noisy from one batch of requests to the next. A placement fitted on one window and
scored on the next pays for all of that as forecast error, which is what makes the problem
hard; a generator without it would reward perfect in-sample packing and nothing else.

The model, per layer l and expert e (all logs natural):

    log-popularity  = base[l, e] + drift_t[l, e] + batch noise
    base[l, e]      = skew_l * N(0, 1),  skew_l ~ U(skew_range)       (fixed per deployment)
    drift_{t+1}     = rho * drift_t + sqrt(1 - rho^2) * drift_sigma * N(0, 1)
                      + (with probability shift_prob per layer) shift_sigma * N(0, 1)
    batch noise     = batch_sigma * N(0, 1), fresh for every `batch_steps` steps

A window of `steps_per_window` steps carries T_s tokens per step (lognormal around
`tokens_per_step`), each routed to `top_k` experts. Counts are drawn as one multinomial per
layer with N = sum_s T_s * top_k trials and the token-weighted mean of the batches' softmax
probabilities. That is a documented approximation of summing per-step top-k samples: it keeps
every layer's total exactly tokens x top_k (as real routing does), ignores that a token's k
experts are distinct, and slightly understates the variance of a sum of multinomials with
different probabilities; both effects are far below the batch noise at these token counts.

Randomness comes only from explicit `numpy.random.Generator`s seeded through
`SeedSequence(seed)` (published dynamics) or `SeedSequence((seed, secret))` (a run's secret
dynamics, a fresh stream's nonce), and every window draws its numbers in a fixed order, so the
same seed gives bit-identical windows on one machine and a shorter trace is a prefix of a longer
one (the quick suite reuses the default suite's first windows). NumPy, not torch, draws them:
its reductions do not depend on the thread count. Another NumPy release or CPU may draw other
windows, which is why the built-in suites' windows are shipped (evaluator/workloads/published.py)
rather than generated.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from evaluator.workloads import published

# SeedSequence spawn keys: the deployment's fixed popularity, and independent dynamics on it.
_BASE_STREAM = 0
SEARCH_STREAM = 1
HELDOUT_STREAM = 2
FRESH_STREAM = 3  # always with a nonce, so never the same as bench_baselines' extra streams 3, 4, ...


@dataclass(frozen=True)
class TraceParams:
    """What a synthetic workload looks like; see the module docstring for the model."""

    top_k: int = 8  # experts each token is routed to
    steps_per_window: int = 100  # forward steps summed into one window (the ADRS trace uses 100)
    tokens_per_step: int = 8192  # mean tokens per step (prefill: thousands; decode: the batch size)
    tokens_sigma: float = 0.3  # lognormal sigma of tokens per step: batch sizes vary
    skew_range: tuple[float, float] = (0.8, 1.4)  # per-layer lognormal sigma of the fixed popularity
    drift_sigma: float = 0.5  # stationary std of the slowly drifting log-popularity
    drift_rho: float = 0.9  # window-to-window persistence of that drift (AR(1) coefficient)
    shift_prob: float = 0.05  # chance per window and layer that the traffic mix shifts abruptly
    shift_sigma: float = 1.0  # size of such a shift, added to the drift (then decays with rho)
    batch_steps: int = 10  # steps a batch of requests keeps its own routing bias
    batch_sigma: float = 0.5  # log-popularity noise of one batch

    def __post_init__(self) -> None:
        if self.steps_per_window % self.batch_steps != 0:
            raise ValueError(f"batch_steps={self.batch_steps} must divide steps_per_window={self.steps_per_window}")
        if not 0 <= self.drift_rho < 1:
            raise ValueError(f"drift_rho={self.drift_rho} must be in [0, 1)")


def generate_windows(params: TraceParams, num_layers: int, num_experts: int, seed: int, stream: int,
                     num_windows: int, secret: int | None = None) -> np.ndarray:
    """[num_windows, L, E] int64 tokens routed per expert, summed over each window's steps.

    `seed` fixes the deployment (its per-layer popularity); `stream` picks independent dynamics
    on top of it (SEARCH_STREAM, HELDOUT_STREAM), and `secret`, when given, another family of
    them: the same workload, different moments. Every stream starts from the drift's stationary
    distribution, so a held-out stream is statistically the far future of the search stream.
    The result is cached and read-only; copy before mutating.
    """
    source = SyntheticSource(params, num_layers, num_experts, seed, 0, 0, secret)
    return _generated(source, stream, num_windows)


def dynamics_rng(seed: int, stream: int, secret: int | None) -> np.random.Generator:
    """The generator of one stream's dynamics: published (`secret` None) or drawn from a secret or nonce."""
    entropy = seed if secret is None else (seed, secret)
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(stream,)))


def simulate(params: TraceParams, base: np.ndarray, rng: np.random.Generator, num_windows: int) -> np.ndarray:
    """[num_windows, L, E] read-only windows of the workload with fixed log-popularity `base`."""
    drift = params.drift_sigma * rng.standard_normal(base.shape)
    windows = np.empty((num_windows, *base.shape), dtype=np.int64)
    for index in range(num_windows):
        windows[index] = _sample_window(params, base + drift, rng)
        drift = _advance_drift(params, drift, rng)
    windows.flags.writeable = False
    return windows


@functools.lru_cache(maxsize=64)
def base_popularity(params: TraceParams, num_layers: int, num_experts: int, seed: int) -> np.ndarray:
    """[L, E] fixed log-popularity, read-only: lognormal popularity with a different skew in every layer."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_BASE_STREAM,)))
    low, high = params.skew_range
    skew = rng.uniform(low, high, size=(num_layers, 1))
    base = skew * rng.standard_normal((num_layers, num_experts))
    base.flags.writeable = False
    return base


def _advance_drift(params: TraceParams, drift: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One AR(1) step of the drift, plus an abrupt shift in the layers whose traffic mix changes."""
    innovation = np.sqrt(1.0 - params.drift_rho**2) * params.drift_sigma * rng.standard_normal(drift.shape)
    shifted = rng.random((drift.shape[0], 1)) < params.shift_prob
    jump = params.shift_sigma * rng.standard_normal(drift.shape) * shifted
    return params.drift_rho * drift + innovation + jump


def _sample_window(params: TraceParams, log_popularity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[L, E] counts of one window: batches with their own bias, then one multinomial per layer."""
    num_batches = params.steps_per_window // params.batch_steps
    sigma = params.tokens_sigma
    step_tokens = np.maximum(1, np.rint(
        params.tokens_per_step * np.exp(sigma * rng.standard_normal(params.steps_per_window) - sigma**2 / 2)))
    batch_tokens = step_tokens.reshape(num_batches, params.batch_steps).sum(axis=1)
    logits = log_popularity + params.batch_sigma * rng.standard_normal((num_batches, *log_popularity.shape))
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    mixed = np.tensordot(batch_tokens / batch_tokens.sum(), probs, axes=1)
    mixed /= mixed.sum(axis=-1, keepdims=True)
    trials = int(batch_tokens.sum()) * params.top_k
    return rng.multinomial(trials, mixed)


@dataclass(frozen=True)
class SyntheticSource:
    """The windows of one synthetic scenario: `num_search` to search on, `num_heldout` kept apart.

    Held-out windows come from HELDOUT_STREAM: the same deployment and workload (same fixed
    popularity and parameters) at another moment, which the search never scores on.

    `published` names the shipped windows of a built-in workload (evaluator/workloads/published.py):
    its fixed popularity is read from them, and so are its search and held-out windows unless
    `secret` is given. `secret` replaces the published dynamics by ones drawn from (seed,
    secret): the same deployment and workload, windows nobody can regenerate without the secret.
    `fresh(nonce, count)` draws yet another stream of the workload, for the fresh-stream check.
    """

    params: TraceParams
    num_layers: int
    num_experts: int
    seed: int
    num_search: int
    num_heldout: int
    secret: int | None = field(default=None, repr=False)  # kept out of logs and error messages
    published: str | None = None

    def search(self) -> np.ndarray:
        return self._stream(SEARCH_STREAM, self.num_search)

    def heldout(self) -> np.ndarray:
        return self._stream(HELDOUT_STREAM, self.num_heldout)

    def fresh(self, nonce: int, count: int) -> np.ndarray:
        """[count, L, E] windows of new dynamics drawn from `nonce`, started like every other stream.

        Not cached: a nonce is used once. Never equal to the search or held-out windows, whatever
        the nonce (another spawn key).
        """
        return simulate(self.params, self.base(), dynamics_rng(self.seed, FRESH_STREAM, nonce), count)

    def base(self) -> np.ndarray:
        """[L, E] the deployment's fixed log-popularity (shipped for a published workload)."""
        if self.published is not None:
            return published.load(self.published).base
        return base_popularity(self.params, self.num_layers, self.num_experts, self.seed)

    def _stream(self, stream: int, count: int) -> np.ndarray:
        if self.published is None or self.secret is not None:
            return _generated(self, stream, count)
        shipped = published.load(self.published)
        windows = shipped.search if stream == SEARCH_STREAM else shipped.heldout
        if windows.shape[0] < count:
            raise RuntimeError(f"{published.path_of(self.published)} holds {windows.shape[0]} windows of stream "
                               f"{stream}, {count} asked for; regenerate it with bench/make_published_windows.py")
        return windows[:count]


@functools.lru_cache(maxsize=64)
def _generated(source: SyntheticSource, stream: int, count: int) -> np.ndarray:
    """`source`'s generated windows of `stream`, cached: a search scores the same windows many times."""
    return simulate(source.params, source.base(), dynamics_rng(source.seed, stream, source.secret), count)
