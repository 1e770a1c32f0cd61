"""The evaluation record: one type used everywhere (journal, commit trailers, --json, prompts).

Serialised in one place (`to_dict` / `from_dict`) so every consumer reads the same fields.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Evaluation":
        scenarios = tuple(
            ScenarioResult(**{**s, "windows": tuple(WindowResult(**w) for w in s.get("windows", ()))})
            for s in data.get("scenarios", ())
        )
        return Evaluation(**{**data, "scenarios": scenarios})

    @staticmethod
    def invalid(error: str, feedback: str, *, device: str, sandbox: str, suite: str, heldout: bool,
                wall_s: float = 0.0) -> "Evaluation":
        """A failed evaluation: scores are zero so it can never be bred from by accident."""
        return Evaluation(valid=False, error=error, combined_score=0.0, balancedness=0.0,
                          balancedness_slot=0.0, balancedness_insample=0.0, bound_gap=0.0,
                          runtime_ms=0.0, speedup_vs_seed=None, device=device, sandbox=sandbox,
                          suite=suite, heldout=heldout, feedback=feedback, wall_s=wall_s)
