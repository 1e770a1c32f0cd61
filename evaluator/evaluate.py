"""evaluate(program, scenarios, options) -> Evaluation: the one contract between evaluator and harness.

The program runs in an isolated child (`evaluator.sandbox.candidate_process`); it receives one window at a time, in
time order, and never sees the next window, the trace path or its scores. Everything it returns is
validated and scored here, in the parent, with the parent's copies of the windows.

Protocol per scenario with windows w_0..w_{n-1}:
- one warm-up call on a distinct input (w_0 with its expert order reversed), validated, not timed;
- calls on w_0..w_{n-2}; the placement from w_i is scored on w_{i+1} (forecast error is part of the
  game) and on w_i itself (in-sample). A program whose `rebalance_experts` takes
  `old_global_expert_indices` (vLLM's name) gets the placement in force there: the phy2log of its
  call on w_{i-1} (None on w_0 and on the warm-up);
- what a deployment pays for the placement on w_{i+1} is modelled (evaluator/scoring/cost_model.py):
  compute paced by the busiest GPU, dispatch/combine traffic, and migrating experts from the
  placement in force; `efficiency` = ideal / modelled time;
- then the fresh-stream check (evaluator/fresh_stream.py, evaluator/scoring/fresh_check.py): the same
  protocol on a fresh secret stream of the scenario's workload, untimed; a program markedly better
  on the graded windows than on fresh ones is invalid;
- runtime is the median of the per-call times the sandbox certifies; scoring is outside that span.

The score: combined_score = basis x P / (P + t), basis = efficiency (the default objective) or
balancedness (`EvalOptions.objective`, for comparison with the peers' numbers).

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
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from evaluator import fresh_stream
from evaluator.errors import UserError
from evaluator.records import DeploymentFigures, Evaluation, ModelledTime, ScenarioResult, WindowResult
from evaluator.sandbox.candidate_process import CallResult, CandidateFailure, CandidateProcess, Limits
from evaluator.scoring import cost_model, fresh_check, metrics
from evaluator.scoring.validate import validate_placement
from evaluator.timing import timing_reference, yardstick
from evaluator.timing.cores import claimed
from evaluator.workloads.scenarios import Scenario

DEFAULT_REBALANCE_PERIOD_S = 10.0
OBJECTIVES = ("efficiency", "balancedness")


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate. `seed_runtime_ms` (per scenario name) enables `speedup_vs_seed`;
    `normalise_timing` False reports wall-clock runtimes (see the module docstring); `objective`
    is what combined_score multiplies; `fresh_check` False skips the fresh stream (only for
    programs that are trusted anyway, such as the seed timed for speedup_vs_seed)."""

    device: str = "cpu"
    heldout: bool = False
    rebalance_period_s: float = DEFAULT_REBALANCE_PERIOD_S
    limits: Limits = field(default_factory=Limits)
    seed_runtime_ms: dict[str, float] | None = None
    normalise_timing: bool = True
    objective: str = "efficiency"
    fresh_check: bool = True


class _Invalid(Exception):
    """A candidate failure found in the parent (bad output), carrying the one-line reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def resolve_device(requested: str, where: str = "device") -> str:
    """The device candidates run on here: 'auto' means the GPU when there is one (candidates are then
    timed where they would run); UserError naming `where` (the flag or setting) for 'cuda' without one."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{where} cuda: no CUDA device is visible here; use cpu or auto")
    return requested


def _shape_args(scenario: Scenario) -> tuple[int, int, int, int]:
    s = scenario.shape
    return s.num_replicas, s.num_groups, s.num_nodes, s.num_gpus


def _checked_call(proc: CandidateProcess, scenario: Scenario, window: torch.Tensor, label: str,
                  previous: torch.Tensor | None) -> CallResult:
    result = proc.call(window, *_shape_args(scenario), previous=previous)
    reason = validate_placement((result.phy2log, result.log2phy, result.logcnt), scenario.shape)
    if reason:
        raise _Invalid(f"{scenario.name}, {label}: {reason}")
    return result


def _placements(proc: CandidateProcess, scenario: Scenario, windows: torch.Tensor,
                stream: str) -> Iterator[tuple[CallResult, torch.Tensor | None]]:
    """The program's placements on windows 0..n-2, each with the placement in force before it, after
    an untimed warm-up call on a distinct input. Lazy: the caller works between calls."""
    _checked_call(proc, scenario, windows[0].flip(-1).contiguous(), f"{stream}warm-up call", None)
    previous = None
    for i in range(windows.shape[0] - 1):
        result = _checked_call(proc, scenario, windows[i], f"{stream}window {i}", previous)
        yield result, previous
        previous = result.phy2log


_BOUNDS: dict[tuple, list[float]] = {}


def _bounds(scenario: Scenario, heldout: bool, windows: torch.Tensor) -> list[float]:
    """Bounds of windows 1..n-1, cached: they depend on the workload only, never on the candidate."""
    key = (scenario.name, scenario.shape, heldout, tuple(windows.shape), int(windows.sum()))
    if key not in _BOUNDS:
        _BOUNDS[key] = metrics.bounds_per_window(windows[1:], scenario.shape.num_replicas,
                                                 scenario.shape.num_gpus)
    return _BOUNDS[key]


def _figures(cost: cost_model.WindowCost) -> DeploymentFigures:
    return DeploymentFigures(efficiency=cost.efficiency, migrated_fraction=cost.migrated_fraction,
                             nodes_per_token=cost.nodes_per_token,
                             modelled_ms=ModelledTime(cost.compute_ms, cost.communication_ms, cost.migration_ms,
                                                      cost.ideal_ms))


@dataclass(frozen=True)
class _Measured:
    """One scenario's calls, scored; runtimes still wall clock. `yardsticks`: every yardstick time
    taken beside its calls (before the first and after each), empty for wall-clock timing; `costs`:
    the modelled cost of each placement; `fresh`: the fresh-stream scores (None: no generator)."""

    scenario: Scenario
    rows: tuple[WindowResult, ...]
    yardsticks: tuple[float, ...]
    costs: tuple[cost_model.WindowCost, ...]
    fresh: fresh_check.ScenarioScores | None


def _measure_scenario(proc: CandidateProcess, scenario: Scenario, options: EvalOptions) -> _Measured:
    windows = scenario.heldout_windows() if options.heldout else scenario.search_windows()
    bounds = _bounds(scenario, options.heldout, windows)
    beside = [proc.yardstick_ms()] if options.normalise_timing else []
    rows: list[WindowResult] = []
    costs: list[cost_model.WindowCost] = []
    for i, (result, previous) in enumerate(_placements(proc, scenario, windows, "")):
        yardstick_ms = None
        if options.normalise_timing:
            beside.append(proc.yardstick_ms())
            yardstick_ms = (beside[-2] + beside[-1]) / 2
        costs.append(cost_model.window_cost(windows[i + 1], result.phy2log, result.logcnt, previous,
                                            scenario.shape, scenario.costs))
        rows.append(_window_row(scenario, windows, i, result, bounds[i], yardstick_ms, _figures(costs[-1])))
    fresh = _fresh_scores(proc, scenario, windows, rows) if options.fresh_check else None
    return _Measured(scenario, tuple(rows), tuple(beside), tuple(costs), fresh)


def _window_row(scenario: Scenario, windows: torch.Tensor, i: int, result: CallResult, bound: float,
                yardstick_ms: float | None, deployment: DeploymentFigures) -> WindowResult:
    num_gpus = scenario.shape.num_gpus
    gpu, slot = metrics.placement_balancedness(windows[i + 1], result.phy2log, result.logcnt, num_gpus)
    insample, _ = metrics.placement_balancedness(windows[i], result.phy2log, result.logcnt, num_gpus)
    raw_ms = result.runtime_s * 1e3
    return WindowResult(index=i, balancedness=gpu, balancedness_slot=slot, balancedness_insample=insample,
                        bound=bound, runtime_ms=raw_ms, runtime_ms_raw=raw_ms, yardstick_ms=yardstick_ms,
                        deployment=deployment)


def _fresh_scores(proc: CandidateProcess, scenario: Scenario, graded: torch.Tensor,
                  rows: list[WindowResult]) -> fresh_check.ScenarioScores | None:
    """The program and the reference on a fresh secret stream, beside their graded-window scores."""
    fresh = fresh_stream.fresh_windows(scenario)
    if fresh is None:
        return None
    placements = ((r.phy2log, r.logcnt) for r, _ in _placements(proc, scenario, fresh, "fresh stream, "))
    return fresh_check.ScenarioScores(
        scenario=scenario.name, graded=[r.balancedness for r in rows],
        graded_reference=fresh_stream.graded_reference_scores(scenario, graded),
        fresh=fresh_stream.next_window_scores(scenario, fresh, placements),
        fresh_reference=fresh_stream.reference_scores(scenario, fresh))


def _normalised(measured: _Measured, reference_ms: float) -> _Measured:
    """`measured` with each call's runtime scaled to the machine's calibrated speed."""
    rows = tuple(replace(r, runtime_ms=yardstick.normalised_ms(r.runtime_ms_raw, r.yardstick_ms, reference_ms))
                 for r in measured.rows)
    return replace(measured, rows=rows)


def _scenario_figures(costs: tuple[cost_model.WindowCost, ...]) -> DeploymentFigures:
    """A scenario's figures; `migrated_fraction` is the mean over rebalances, that is over the windows
    that had a placement in force (all but the first)."""
    figures = _figures(cost_model.scenario_cost(costs))
    rebalances = costs[1:]
    migrated = statistics.fmean(c.migrated_fraction for c in rebalances) if rebalances else 0.0
    return replace(figures, migrated_fraction=migrated)


def _mean_figures(figures: list[DeploymentFigures]) -> DeploymentFigures:
    """Means over scenarios (as balancedness is averaged over scenarios)."""
    def mean(get) -> float:
        return statistics.fmean(get(f) for f in figures)
    return DeploymentFigures(
        efficiency=mean(lambda f: f.efficiency), migrated_fraction=mean(lambda f: f.migrated_fraction),
        nodes_per_token=mean(lambda f: f.nodes_per_token),
        modelled_ms=ModelledTime(*(mean(lambda f, name=name: getattr(f.modelled_ms, name))
                                   for name in ("compute", "communication", "migration", "ideal"))))


def _summarise(measured: _Measured, options: EvalOptions) -> ScenarioResult:
    rows = measured.rows
    balancedness = statistics.fmean(r.balancedness for r in rows)
    runtime_ms = metrics.median([r.runtime_ms for r in rows])
    deployment = _scenario_figures(measured.costs)
    basis = deployment.efficiency if options.objective == "efficiency" else balancedness
    fresh = fresh_check.compare(measured.fresh) if measured.fresh is not None else None
    return ScenarioResult(
        name=measured.scenario.name,
        shape={k: int(v) for k, v in vars(measured.scenario.shape).items()},
        balancedness=balancedness,
        balancedness_slot=statistics.fmean(r.balancedness_slot for r in rows),
        balancedness_insample=statistics.fmean(r.balancedness_insample for r in rows),
        bound_gap=statistics.fmean(r.bound for r in rows) - balancedness,
        runtime_ms=runtime_ms,
        combined_score=metrics.combined_score(basis, runtime_ms / 1e3, options.rebalance_period_s),
        windows=rows,
        runtime_ms_raw=metrics.median([r.runtime_ms_raw for r in rows]),
        windows_digest=measured.scenario.windows_digest(options.heldout),
        deployment=deployment,
        fresh_balancedness=fresh.fresh if fresh is not None else None,
    )


def _speedup(results: list[ScenarioResult], seed_runtime_ms: dict[str, float] | None) -> float | None:
    """Geometric mean over scenarios of seed time / candidate time (None without seed figures)."""
    if not seed_runtime_ms or any(r.name not in seed_runtime_ms for r in results):
        return None
    ratios = [seed_runtime_ms[r.name] / max(r.runtime_ms, 1e-6) for r in results]
    return statistics.geometric_mean(ratios)


def feedback_for(results: list[ScenarioResult], options: EvalOptions) -> str:
    """What the search shows the LLM about a valid program: the per-scenario numbers."""
    period_s = options.rebalance_period_s
    lines = [f"Valid on all {len(results)} scenarios (placement fitted on window i, scored on window i+1; "
             f"combined = {options.objective} x {period_s:g}/({period_s:g} + runtime_s)):"]
    for r in results:
        d = r.deployment
        assert d is not None
        ms = d.modelled_ms
        lines.append(
            f"- {r.name}: efficiency {d.efficiency:.4f} (modelled ms per rebalance period: compute {ms.compute:.0f}, "
            f"communication {ms.communication:.0f}, migration {ms.migration:.0f}; ideal {ms.ideal:.0f}), "
            f"balancedness {r.balancedness:.4f} (in-sample {r.balancedness_insample:.4f}, gap to bound "
            f"{r.bound_gap:.4f}), migrated {d.migrated_fraction:.1%} of slots, {d.nodes_per_token:.2f} nodes "
            f"per token, runtime {r.runtime_ms:.1f} ms, combined {r.combined_score:.4f}")
    return "\n".join(lines)


def _fresh_verdict(measured: list[_Measured]) -> None:
    """_Invalid when the program is markedly better on the graded windows than on fresh ones."""
    reason = fresh_check.check([m.fresh for m in measured if m.fresh is not None])
    if reason:
        raise _Invalid(reason)


def _run(proc: CandidateProcess, scenarios: list[Scenario], options: EvalOptions) -> tuple[list[_Measured],
                                                                                             float | None]:
    """Every scenario's measurements (normalised when asked) and the machine's reference, if used."""
    proc.start()
    measured = [_measure_scenario(proc, s, options) for s in scenarios]
    _fresh_verdict(measured)
    if not options.normalise_timing:
        return measured, None
    samples = [ms for m in measured for ms in m.yardsticks]
    reference_ms = timing_reference.reference_ms(samples, proc.yardstick_ms)
    return [_normalised(m, reference_ms) for m in measured], reference_ms


def evaluate(program: Path, scenarios: list[Scenario], suite: str, options: EvalOptions) -> Evaluation:
    """Run `program` isolated on every scenario and score it. Never raises for a bad program.

    Scoring runs on one thread: it is a few vectorised ops per window, and more threads would only
    compete for the cores with candidates being timed (in this or a concurrent evaluation).
    """
    if options.objective not in OBJECTIVES:
        raise ValueError(f"objective {options.objective!r} is not one of {OBJECTIVES}")
    torch.set_num_threads(1)
    started = time.perf_counter()
    device = resolve_device(options.device)
    with claimed(options.limits.cpus, options.limits.threads) as cpus:
        proc = CandidateProcess(Path(program), replace(options.limits, cpus=cpus), device=device)
        common = dict(device=device, sandbox=proc.sandbox, suite=suite, heldout=options.heldout)
        try:
            with proc:
                measured, reference_ms = _run(proc, scenarios, options)
        except (CandidateFailure, _Invalid) as failure:
            detail = "\n".join(part for part in (failure.detail, proc.output()) if part).strip()
            feedback = f"INVALID: {failure.reason}" + (f"\n{detail}" if detail else "")
            return Evaluation.invalid(failure.reason, feedback, wall_s=time.perf_counter() - started, **common)
    results = [_summarise(m, options) for m in measured]
    fresh = [r.fresh_balancedness for r in results if r.fresh_balancedness is not None]
    return Evaluation(
        valid=True, error=None,
        combined_score=statistics.fmean(r.combined_score for r in results),
        balancedness=statistics.fmean(r.balancedness for r in results),
        balancedness_slot=statistics.fmean(r.balancedness_slot for r in results),
        balancedness_insample=statistics.fmean(r.balancedness_insample for r in results),
        bound_gap=statistics.fmean(r.bound_gap for r in results),
        runtime_ms=statistics.fmean(r.runtime_ms for r in results),
        runtime_ms_raw=statistics.fmean(r.runtime_ms_raw or 0.0 for r in results),
        timing_reference_ms=reference_ms,
        speedup_vs_seed=_speedup(results, options.seed_runtime_ms),
        feedback=feedback_for(results, options),
        scenarios=tuple(results), wall_s=time.perf_counter() - started,
        deployment=_mean_figures([r.deployment for r in results if r.deployment is not None]),
        fresh_balancedness=statistics.fmean(fresh) if fresh else None,
        objective=options.objective, **common)
