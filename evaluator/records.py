"""The evaluation record: one type used everywhere (journal, commit trailers, --json, prompts).

Serialised in one place (`to_dict` / `from_dict`) so every consumer reads the same fields.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class ModelledTime:
    """Modelled milliseconds of one rebalance period of the deployment, by what it is spent on
    (evaluator/scoring/cost_model.py, docs/cost-model.md): expert compute paced by the busiest GPU,
    cross-node and NVLink dispatch/combine, and copying migrated experts' weights; `ideal` is the same
    period with perfect compute balance, the least communication the routing allows and no migration."""

    compute: float
    communication: float
    migration: float
    ideal: float

    @property
    def total(self) -> float:
        return self.compute + self.communication + self.migration


@dataclass(frozen=True)
class DeploymentFigures:
    """What a deployment pays beyond balance, for one window or averaged over many.

    `efficiency` = ideal / modelled time, in (0, 1] (a ratio of sums over windows); `migrated_fraction`
    = the share of slots whose GPU must load the expert anew at the rebalance; `nodes_per_token` = the
    mean number of distinct nodes a token's experts sit on."""

    efficiency: float
    migrated_fraction: float
    nodes_per_token: float
    modelled_ms: ModelledTime


@dataclass(frozen=True)
class WindowResult:
    """A placement fitted on window `index` and scored on window `index + 1`."""

    index: int
    balancedness: float  # GPU-level, on the next window (the headline)
    balancedness_slot: float  # slot-level, on the next window (ADRS definition)
    balancedness_insample: float  # GPU-level, on the window it was fitted on
    bound: float  # best GPU-level balancedness any placement could reach on the next window
    runtime_ms: float  # this call's time, normalised by the yardstick unless timing is wall-clock
    runtime_ms_raw: float | None = None  # the call's wall-clock time (certified by the sandbox)
    yardstick_ms: float | None = None  # the yardstick beside this call (None: wall-clock timing)
    deployment: DeploymentFigures | None = None  # the modelled cost on the next window (None: older records)


@dataclass(frozen=True)
class ScenarioResult:
    """Aggregates over one scenario's windows: means of the window figures, median runtime."""

    name: str
    shape: dict[str, int]
    balancedness: float
    balancedness_slot: float
    balancedness_insample: float
    bound_gap: float  # mean(bound) - balancedness: how far from the best possible
    runtime_ms: float  # median per-call time
    combined_score: float
    windows: tuple[WindowResult, ...] = ()
    runtime_ms_raw: float | None = None  # median per-call wall-clock time
    windows_digest: str | None = None  # which windows it was scored on (Scenario.windows_digest)
    deployment: DeploymentFigures | None = None  # the windows' modelled cost (efficiency: a ratio of sums)
    fresh_balancedness: float | None = None  # on a fresh secret stream of the same workload (None: no generator)


@dataclass(frozen=True)
class Evaluation:
    """The one result of evaluating a program on a suite. Invalid programs have valid=False and zero scores."""

    valid: bool
    error: str | None
    combined_score: float
    balancedness: float
    balancedness_slot: float
    balancedness_insample: float
    bound_gap: float
    runtime_ms: float
    speedup_vs_seed: float | None
    device: str
    sandbox: str
    suite: str
    heldout: bool
    feedback: str
    scenarios: tuple[ScenarioResult, ...] = ()
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    runtime_ms_raw: float | None = None  # mean over scenarios of the median wall-clock call time
    timing_reference_ms: float | None = None  # the machine's calibrated yardstick (None: wall clock)
    deployment: DeploymentFigures | None = None  # means over scenarios (None: older records)
    fresh_balancedness: float | None = None  # mean over the scenarios that have a fresh stream
    objective: str = "balancedness"  # what combined_score multiplies: "efficiency" or "balancedness"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Evaluation:
        scenarios = tuple(
            _scenario_from_dict(s) for s in data.get("scenarios", ())
        )
        return Evaluation(**{**_known(Evaluation, data), "scenarios": scenarios,
                             "deployment": _deployment_from_dict(data.get("deployment"))})

    @property
    def efficiency(self) -> float | None:
        return self.deployment.efficiency if self.deployment is not None else None

    @property
    def migrated_fraction(self) -> float | None:
        return self.deployment.migrated_fraction if self.deployment is not None else None

    @property
    def nodes_per_token(self) -> float | None:
        return self.deployment.nodes_per_token if self.deployment is not None else None

    @property
    def score_basis(self) -> float:
        """What combined_score multiplies by the speed factor: efficiency or balancedness."""
        if self.objective == "efficiency" and self.deployment is not None:
            return self.deployment.efficiency
        return self.balancedness

    @staticmethod
    def invalid(error: str, feedback: str, *, device: str, sandbox: str, suite: str, heldout: bool,
                wall_s: float = 0.0) -> Evaluation:
        """A failed evaluation: scores are zero so it can never be bred from by accident."""
        return Evaluation(valid=False, error=error, combined_score=0.0, balancedness=0.0,
                          balancedness_slot=0.0, balancedness_insample=0.0, bound_gap=0.0,
                          runtime_ms=0.0, speedup_vs_seed=None, device=device, sandbox=sandbox,
                          suite=suite, heldout=heldout, feedback=feedback, wall_s=wall_s)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """`data` restricted to the fields `cls` has, so records written by newer or older versions load."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _deployment_from_dict(data: dict[str, Any] | None) -> DeploymentFigures | None:
    if data is None:
        return None
    return DeploymentFigures(**{**_known(DeploymentFigures, data),
                                "modelled_ms": ModelledTime(**_known(ModelledTime, data["modelled_ms"]))})


def _scenario_from_dict(data: dict[str, Any]) -> ScenarioResult:
    windows = tuple(WindowResult(**{**_known(WindowResult, w),
                                    "deployment": _deployment_from_dict(w.get("deployment"))})
                    for w in data.get("windows", ()))
    return ScenarioResult(**{**_known(ScenarioResult, data), "windows": windows,
                             "deployment": _deployment_from_dict(data.get("deployment"))})
