"""Deployment shapes, scenarios (a shape plus a load trace cut into windows) and named suites.

The evaluator calls a program on window i and scores the placement on window i+1, so a
scenario with W search windows gives W-1 scored placements (plus one warm-up call). The suites'
window counts are set by the time budget of evaluating the seed program on them (see
docs/workloads.md, "Budget"): `default` within a minute on a 2-core CPU, `quick` within seconds.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from evaluator.errors import UserError
from evaluator.workloads.deployment import DeploymentCosts, default_costs, scenario_costs, trace_costs
from evaluator.workloads.shape import Shape
from evaluator.workloads.synthetic import SyntheticSource, TraceParams
from evaluator.workloads.tracefile import TraceFileSource, load_trace


class WindowSource(Protocol):
    """Where a scenario's windows come from; both return read-only [W, L, E] int64 arrays."""

    def search(self) -> np.ndarray: ...

    def heldout(self) -> np.ndarray: ...


@runtime_checkable
class FreshSource(Protocol):
    """A source with a generator behind it, which can draw new windows of the same workload."""

    def fresh(self, nonce: int, count: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Scenario:
    """A deployment shape and its load windows. Windows are produced lazily and cached per process."""

    name: str
    shape: Shape
    description: str
    source: WindowSource
    # What the deployment pays per token, byte and expert (the cost model's constants); None: the
    # defaults for the shape (deployment.default_costs).
    costs: DeploymentCosts | None = None

    def __post_init__(self) -> None:
        if self.costs is None:
            object.__setattr__(self, "costs", default_costs(self.shape))

    def search_windows(self) -> torch.Tensor:
        """[W, L, E] int64: what a search scores on. A fresh copy: callers may not corrupt the cache."""
        return torch.from_numpy(np.array(self.source.search()))

    def heldout_windows(self) -> torch.Tensor:
        """[W', L, E] int64 never scored during a search (UserError when the trace is too short)."""
        return torch.from_numpy(np.array(self.source.heldout()))

    def fresh_windows(self, nonce: int, count: int) -> torch.Tensor | None:
        """[count, L, E] int64: new windows of the same workload drawn from `nonce`; None for a trace file.

        For the fresh-stream check (evaluator/scoring/fresh_check.py): same deployment, fixed
        popularity and parameters as the search and held-out windows, dynamics no one has seen,
        started the way theirs are, so position i of each stream compares. A trace file has
        no generator behind it, so the check is skipped there. Costs ~4-5 ms a DeepSeek-V3 window.
        """
        if not isinstance(self.source, FreshSource):
            return None
        return torch.from_numpy(np.array(self.source.fresh(nonce, count)))

    def windows_digest(self, heldout: bool) -> str:
        """A digest of the search (or held-out) windows: which loads a score was made on.

        The built-in suites' published windows are the same on every machine. A secret suite's
        windows are generated at run time, and another NumPy release or CPU may generate other
        ones from the same secret (NumPy's generator and float maths differ between them), so
        scores compare only where these digests match.
        """
        windows = self.source.heldout() if heldout else self.source.search()
        return hashlib.sha256(np.ascontiguousarray(windows).tobytes()).hexdigest()[:16]


# -- synthetic workloads (parameters calibrated in docs/workloads.md) --------------------------

# DeepSeek-V3 prefill: calibrated so the seed lands on the published real-trace figures.
PREFILL = TraceParams(skew_range=(0.3, 0.75), drift_sigma=0.2, drift_rho=0.85, batch_sigma=0.35)
# Decode: the same traffic, one token per running sequence per step.
DECODE = replace(PREFILL, tokens_per_step=4096)

SEARCH_WINDOWS = 30
HELDOUT_WINDOWS = 8
QUICK_SEARCH_WINDOWS = 12
QUICK_HELDOUT_WINDOWS = 4

DEEPSEEK_V3_PREFILL = Shape(58, 256, 288, 8, 4, 32)
DEEPSEEK_V3_DECODE = Shape(58, 256, 288, 8, 18, 144)
QWEN3_30B = Shape(48, 128, 160, 1, 1, 8)
QWEN3_235B = Shape(94, 128, 160, 1, 4, 32)


# Windows per fresh stream (Scenario.fresh_windows) for the fresh-stream check: 16 more calls per
# scenario should take the seed's default-suite evaluation from ~22 s to ~34 s (docs/workloads.md).
FRESH_WINDOWS = 16


@dataclass(frozen=True)
class _Workload:
    """A built-in suite's scenario before its windows: the published workload `key` and its windows' counts."""

    name: str
    shape: Shape
    params: TraceParams
    seed: int
    key: str  # its published windows (evaluator/workloads/windows/KEY.npz)
    num_search: int
    num_heldout: int
    description: str

    def scenario(self, secret: int | None) -> Scenario:
        source = SyntheticSource(self.params, self.shape.num_layers, self.shape.num_experts, self.seed,
                                 self.num_search, self.num_heldout, secret=secret, published=self.key)
        return Scenario(self.name, self.shape, self.description, source, scenario_costs(self.name))


def _default_suite() -> list[_Workload]:
    n, h = SEARCH_WINDOWS, HELDOUT_WINDOWS
    return [
        _Workload("deepseek-v3-prefill", DEEPSEEK_V3_PREFILL, PREFILL, 1, "deepseek-v3-prefill", n, h,
                  "DeepSeek-V3 prefill: 58 x 256 experts (top-8) on 32 GPUs in 4 nodes, 9 slots per GPU; "
                  "8 groups on 4 nodes (hierarchical policy)"),
        _Workload("deepseek-v3-decode", DEEPSEEK_V3_DECODE, DECODE, 2, "deepseek-v3-decode", n, h,
                  "DeepSeek-V3 decode: 58 x 256 experts (top-8) on 144 GPUs in 18 nodes, 2 slots per GPU; "
                  "8 groups do not divide over 18 nodes (global policy)"),
        _Workload("qwen3-30b-a3b", QWEN3_30B, PREFILL, 3, "qwen3-30b-a3b", n, h,
                  "Qwen3-30B-A3B: 48 x 128 experts (top-8) on 8 GPUs in 1 node, 20 slots per GPU"),
        _Workload("qwen3-235b-a22b", QWEN3_235B, PREFILL, 4, "qwen3-235b-a22b", n, h,
                  "Qwen3-235B-A22B: 94 x 128 experts (top-8) with 32 redundant slots on 32 GPUs in 4 nodes, "
                  "5 slots per GPU (global policy)"),
    ]


def _quick_suite() -> list[_Workload]:
    n, h = QUICK_SEARCH_WINDOWS, QUICK_HELDOUT_WINDOWS
    return [
        # The default scenario's workload, seed and (published or secret) dynamics: its first windows.
        _Workload("deepseek-v3-prefill-quick", DEEPSEEK_V3_PREFILL, PREFILL, 1, "deepseek-v3-prefill", n, h,
                  f"DeepSeek-V3 prefill (the default scenario's first {n} windows)"),
        _Workload("qwen3-30b-a3b-12l", replace(QWEN3_30B, num_layers=12), PREFILL, 3, "qwen3-30b-a3b-12l", n, h,
                  "Qwen3-30B-A3B cut to 12 of its 48 layers: 12 x 128 experts on 8 GPUs, 20 slots per GPU"),
    ]


_SUITES = {"default": _default_suite, "quick": _quick_suite}


def suite_names() -> list[str]:
    return list(_SUITES)


def suite(name: str, secret: int | None = None) -> list[Scenario]:
    """The named suite's scenarios (cheap: windows are read or generated on first use).

    `secret` None gives the published windows, the same on every machine (what `eval` and
    `compare` score). An integer (new_secret()) gives the same deployments, names, popularity and
    traffic parameters with search and held-out dynamics drawn from (scenario seed, secret):
    windows a candidate cannot regenerate from the public code, for a search run to score on.
    """
    if name not in _SUITES:
        raise UserError(f"unknown suite '{name}'; known suites: {', '.join(_SUITES)}")
    if secret is not None and not (isinstance(secret, int) and secret >= 0):
        raise ValueError(f"a suite's secret must be a non-negative integer, got {secret!r}")
    return [workload.scenario(secret) for workload in _SUITES[name]()]


def new_secret() -> int:
    """A fresh 64-bit secret for a run's windows (or a nonce for a fresh stream), from the OS's CSPRNG."""
    return secrets.randbits(64)


def published_workloads() -> dict[str, SyntheticSource]:
    """Every published workload's source with the most windows any suite asks of it, by key.

    What bench/make_published_windows.py generates and ships; the built-in suites read prefixes of it.
    """
    longest: dict[str, _Workload] = {}
    for make in _SUITES.values():
        for workload in make():
            known = longest.get(workload.key, workload)
            if (known.params, known.shape, known.seed) != (workload.params, workload.shape, workload.seed):
                raise RuntimeError(f"published workload {workload.key} is used with two different generators")
            longest[workload.key] = replace(known, num_search=max(known.num_search, workload.num_search),
                                            num_heldout=max(known.num_heldout, workload.num_heldout))
    return {key: SyntheticSource(w.params, w.shape.num_layers, w.shape.num_experts, w.seed, w.num_search,
                                 w.num_heldout) for key, w in longest.items()}


# -- real traces ---------------------------------------------------------------------------------

# `--trace` overrides: the flag's name (without dashes) and the Shape field it sets.
OVERRIDES = {"replicas": "num_replicas", "groups": "num_groups", "nodes": "num_nodes", "gpus": "num_gpus"}
# A trace's deployment when no flag says otherwise, by expert count: the suite's model with it.
_KNOWN_DEPLOYMENTS = {256: DEEPSEEK_V3_PREFILL, 128: QWEN3_30B}


def trace_scenarios(paths: list[Path], window_steps: int | None = None,
                    shape_overrides: Mapping[str, int | None] | None = None,
                    cost_overrides: Mapping[str, float] | None = None) -> list[Scenario]:
    """One scenario per trace file (--trace FILE ...): L x E from the file, the rest from the flags.

    `shape_overrides` maps flag names ("replicas", "groups", "nodes", "gpus") to values; None
    means not given. `window_steps` None keeps a converted .npz's own window length, or 100
    steps for JSON. `cost_overrides` sets deployment constants (DeploymentCosts fields) over the
    defaults for the trace's model (deployment.trace_costs); the window length is the trace's
    unless set. Loads each file now (streamed, cached), so a bad file, shape or constant fails
    before any evaluation.
    """
    scenarios = []
    names: set[str] = set()
    for path in paths:
        trace = load_trace(path, window_steps)
        _, num_layers, num_experts = trace.windows.shape
        shape = resolve_shape(num_layers, num_experts, shape_overrides or {}, path.name)
        source = TraceFileSource(path, window_steps)
        source.search()  # enough windows to score anything?
        name = _unique(path.name.split(".")[0], names)
        costs = trace_costs(shape, {"steps_per_window": trace.window_steps, **(cost_overrides or {})}, path.name)
        scenarios.append(Scenario(name, shape, f"trace {path}: {trace.describe()}", source, costs))
    return scenarios


def _unique(stem: str, taken: set[str]) -> str:
    name, suffix = stem, 2
    while name in taken:
        name, suffix = f"{stem}-{suffix}", suffix + 1
    taken.add(name)
    return name


def resolve_shape(num_layers: int, num_experts: int, overrides: Mapping[str, int | None], where: str) -> Shape:
    """The deployment for an L x E trace: flags first, then the known model with E experts; checked."""
    given = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - set(OVERRIDES))
    if unknown:
        raise UserError(f"{where}: cannot set {', '.join(unknown)}; the trace fixes layers and experts, the "
                        f"flags set {', '.join('--' + key for key in OVERRIDES)}")
    settings = {"num_groups": 1, "num_nodes": 1}
    known = _KNOWN_DEPLOYMENTS.get(num_experts)
    if known is not None:
        settings.update({field: getattr(known, field) for field in OVERRIDES.values()})
    settings.update({OVERRIDES[key]: value for key, value in given.items()})
    missing = [f"--{key}" for key, field in OVERRIDES.items() if field not in settings]
    if missing:
        raise UserError(f"{where}: {num_experts} experts per layer matches no known deployment; "
                        f"pass {' and '.join(missing)} (and --groups, --nodes if not 1)")
    shape = Shape(num_layers=num_layers, num_experts=num_experts, **settings)
    check_shape(shape, where)
    return shape


def check_shape(shape: Shape, where: str) -> None:
    """UserError naming the flag when a deployment cannot exist (the seed's own preconditions)."""
    for field in fields(Shape):
        value = getattr(shape, field.name)
        if not isinstance(value, int) or value < 1:
            flag = {name: f"--{key}" for key, name in OVERRIDES.items()}.get(field.name, field.name)
            raise UserError(f"{where}: {flag} must be a positive integer, got {value!r}")
    s = shape
    if s.num_experts % s.num_groups:
        raise UserError(f"{where}: {s.num_experts} experts cannot be split into --groups {s.num_groups} equal "
                        "groups; pass a --groups that divides the expert count")
    if s.num_replicas < s.num_experts:
        raise UserError(f"{where}: --replicas {s.num_replicas} is fewer than the {s.num_experts} experts; every "
                        f"expert needs a slot, so pass --replicas >= {s.num_experts}")
    if s.num_replicas % s.num_gpus:
        raise UserError(f"{where}: --replicas {s.num_replicas} is not a multiple of --gpus {s.num_gpus}; every "
                        "GPU holds the same number of slots")
    if s.num_gpus % s.num_nodes:
        raise UserError(f"{where}: --gpus {s.num_gpus} is not a multiple of --nodes {s.num_nodes}; every node "
                        "holds the same number of GPUs")
