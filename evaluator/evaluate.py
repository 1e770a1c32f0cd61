"""evaluate(program, scenarios, options) -> Evaluation: the one contract between evaluator and harness.

The program runs in an isolated child (`evaluator.sandbox.candidate_process`); it receives one window at a time, in
time order, and never sees the next window, the trace path or its scores. Everything it returns is
validated and scored here, in the parent, with the parent's copies of the windows.

Protocol per scenario with windows w_0..w_{n-1}:
- one warm-up call on a distinct input (w_0 with its expert order reversed), validated, not timed;
- calls on w_0..w_{n-2}; the placement from w_i is scored on w_{i+1} (forecast error is part of the
  game) and on w_i itself (in-sample);
- runtime is the median of the per-call times the sandbox certifies; scoring is outside that span.

Timing (`EvalOptions.normalise_timing`, on by default): the candidate is pinned to cores it holds
alone on this machine while it runs (a worker slot's, else the first free ones: evaluator.timing.cores);
the keeper times the yardstick on those cores before each scenario's first call and after each
call, and each call's time is scaled by the machine's calibrated yardstick over the mean of the two
beside it (evaluator.timing.yardstick, evaluator.timing.timing_reference; the first evaluation on a machine
calibrates it from its own yardsticks, so the scaling is applied once all calls are done). That
cancels the host's speed swings, so `runtime_ms` is repeatable across evaluations; the wall-clock
figures are kept beside it (`runtime_ms_raw`). With it off, `runtime_ms` is wall clock.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from evaluator.scoring import metrics
from evaluator.timing import timing_reference, yardstick
from evaluator.timing.cores import claimed
from evaluator.records import Evaluation, ScenarioResult, WindowResult
from evaluator.sandbox.candidate_process import CandidateFailure, CandidateProcess, Limits
from evaluator.workloads.scenarios import Scenario
from evaluator.scoring.validate import validate_placement

DEFAULT_REBALANCE_PERIOD_S = 10.0


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate. `seed_runtime_ms` (per scenario name) enables `speedup_vs_seed`;
    `normalise_timing` False reports wall-clock runtimes (see the module docstring)."""

    device: str = "cpu"
    heldout: bool = False
    rebalance_period_s: float = DEFAULT_REBALANCE_PERIOD_S
    limits: Limits = field(default_factory=Limits)
    seed_runtime_ms: dict[str, float] | None = None
    normalise_timing: bool = True


class _Invalid(Exception):
    """A candidate failure found in the parent (bad output), carrying the one-line reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def resolve_device(requested: str) -> str:
    """'auto' means the GPU when there is one: candidates are then timed where they would run."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _shape_args(scenario: Scenario) -> tuple[int, int, int, int]:
    s = scenario.shape
    return s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus


def _checked_call(proc: CandidateProcess, scenario: Scenario, window: torch.Tensor, label: str):
    result = proc.call(window, *_shape_args(scenario))
    outputs = (result.phy2log, result.log2phy, result.logcnt)
    reason = validate_placement(outputs, scenario.shape)
    if reason:
        raise _Invalid(f"{scenario.name}, {label}: {reason}")
    return result


_BOUNDS: dict[tuple, list[float]] = {}


def _bounds(scenario: Scenario, heldout: bool, windows: torch.Tensor) -> list[float]:
    """Bounds of windows 1..n-1, cached: they depend on the workload only, never on the candidate."""
    key = (scenario.name, scenario.shape, heldout, tuple(windows.shape), int(windows.sum()))
    if key not in _BOUNDS:
        _BOUNDS[key] = metrics.bounds_per_window(windows[1:], scenario.shape.num_replicas,
                                                 scenario.shape.num_gpus)
    return _BOUNDS[key]


@dataclass(frozen=True)
class _Measured:
    """One scenario's calls, scored; runtimes still wall clock. `yardsticks`: every yardstick time
    taken beside its calls (before the first and after each), empty for wall-clock timing."""

    scenario: Scenario
    rows: tuple[WindowResult, ...]
    yardsticks: tuple[float, ...]


def _measure_scenario(proc: CandidateProcess, scenario: Scenario, options: EvalOptions) -> _Measured:
    windows = scenario.heldout_windows() if options.heldout else scenario.search_windows()
    num_gpus = scenario.shape.num_gpus
    bounds = _bounds(scenario, options.heldout, windows)
    _checked_call(proc, scenario, windows[0].flip(-1).contiguous(), "warm-up call")
    beside = [proc.yardstick_ms()] if options.normalise_timing else []
    rows: list[WindowResult] = []
    for i in range(windows.shape[0] - 1):
        result = _checked_call(proc, scenario, windows[i], f"window {i}")
        yardstick_ms = None
        if options.normalise_timing:
            beside.append(proc.yardstick_ms())
            yardstick_ms = (beside[-2] + beside[-1]) / 2
        gpu, slot = metrics.placement_balancedness(windows[i + 1], result.phy2log, result.logcnt, num_gpus)
        insample, _ = metrics.placement_balancedness(windows[i], result.phy2log, result.logcnt, num_gpus)
        raw_ms = result.runtime_s * 1e3
        rows.append(WindowResult(index=i, balancedness=gpu, balancedness_slot=slot,
                                 balancedness_insample=insample, bound=bounds[i],
                                 runtime_ms=raw_ms, runtime_ms_raw=raw_ms, yardstick_ms=yardstick_ms))
    return _Measured(scenario, tuple(rows), tuple(beside))


def _normalised(measured: _Measured, reference_ms: float) -> _Measured:
    """`measured` with each call's runtime scaled to the machine's calibrated speed."""
    rows = tuple(replace(r, runtime_ms=yardstick.normalised_ms(r.runtime_ms_raw, r.yardstick_ms, reference_ms))
                 for r in measured.rows)
    return replace(measured, rows=rows)


def _summarise(measured: _Measured, options: EvalOptions) -> ScenarioResult:
    rows = measured.rows
    balancedness = statistics.fmean(r.balancedness for r in rows)
    runtime_ms = metrics.median([r.runtime_ms for r in rows])
    return ScenarioResult(
        name=measured.scenario.name,
        shape={k: int(v) for k, v in vars(measured.scenario.shape).items()},
        balancedness=balancedness,
        balancedness_slot=statistics.fmean(r.balancedness_slot for r in rows),
        balancedness_insample=statistics.fmean(r.balancedness_insample for r in rows),
        bound_gap=statistics.fmean(r.bound for r in rows) - balancedness,
        runtime_ms=runtime_ms,
        combined_score=metrics.combined_score(balancedness, runtime_ms / 1e3, options.rebalance_period_s),
        windows=rows,
        runtime_ms_raw=metrics.median([r.runtime_ms_raw for r in rows]),
        windows_digest=measured.scenario.windows_digest(options.heldout),
    )


def _speedup(results: list[ScenarioResult], seed_runtime_ms: dict[str, float] | None) -> float | None:
    """Geometric mean over scenarios of seed time / candidate time (None without seed figures)."""
    if not seed_runtime_ms or any(r.name not in seed_runtime_ms for r in results):
        return None
    ratios = [seed_runtime_ms[r.name] / max(r.runtime_ms, 1e-6) for r in results]
    return statistics.geometric_mean(ratios)


def feedback_for(results: list[ScenarioResult], period_s: float) -> str:
    """What the search shows the LLM about a valid program: the per-scenario numbers."""
    lines = [f"Valid on all {len(results)} scenarios (placement fitted on window i, scored on window i+1; "
             f"combined = balancedness x {period_s:g}/({period_s:g} + runtime_s)):"]
    for r in results:
        lines.append(
            f"- {r.name}: balancedness {r.balancedness:.4f} (slot-level {r.balancedness_slot:.4f}, in-sample "
            f"{r.balancedness_insample:.4f}, gap to bound {r.bound_gap:.4f}), runtime {r.runtime_ms:.1f} ms, "
            f"combined {r.combined_score:.4f}")
    return "\n".join(lines)


def evaluate(program: Path, scenarios: list[Scenario], suite: str, options: EvalOptions) -> Evaluation:
    """Run `program` isolated on every scenario and score it. Never raises for a bad program.

    Scoring runs on one thread: it is a few vectorised ops per window, and more threads would only
    compete for the cores with candidates being timed (in this or a concurrent evaluation).
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    device = resolve_device(options.device)
    common = dict(device=device, sandbox=options.limits.sandbox, suite=suite, heldout=options.heldout)
    reference_ms = None
    with claimed(options.limits.cpus, options.limits.threads) as cpus:
        proc = CandidateProcess(Path(program), replace(options.limits, cpus=cpus), device=device)
        try:
            with proc:
                proc.start()
                measured = [_measure_scenario(proc, s, options) for s in scenarios]
                if options.normalise_timing:
                    samples = [ms for m in measured for ms in m.yardsticks]
                    reference_ms = timing_reference.reference_ms(samples, proc.yardstick_ms)
                    measured = [_normalised(m, reference_ms) for m in measured]
        except (CandidateFailure, _Invalid) as failure:
            detail = "\n".join(part for part in (failure.detail, proc.output()) if part).strip()
            feedback = f"INVALID: {failure.reason}" + (f"\n{detail}" if detail else "")
            return Evaluation.invalid(failure.reason, feedback, wall_s=time.perf_counter() - started, **common)
    results = [_summarise(m, options) for m in measured]
    return Evaluation(
        valid=True, error=None,
        combined_score=statistics.fmean(r.combined_score for r in results),
        balancedness=statistics.fmean(r.balancedness for r in results),
        balancedness_slot=statistics.fmean(r.balancedness_slot for r in results),
        balancedness_insample=statistics.fmean(r.balancedness_insample for r in results),
        bound_gap=statistics.fmean(r.bound_gap for r in results),
        runtime_ms=statistics.fmean(r.runtime_ms for r in results),
        runtime_ms_raw=statistics.fmean(r.runtime_ms_raw for r in results),
        timing_reference_ms=reference_ms,
        speedup_vs_seed=_speedup(results, options.seed_runtime_ms),
        feedback=feedback_for(results, options.rebalance_period_s),
        scenarios=tuple(results), wall_s=time.perf_counter() - started, **common)
