"""Where the controller's work runs: proposals on local threads, evaluations on an executor.

Proposals wait on the network, so a few daemon threads keep `concurrency` of them in flight
(`LocalExecutor`); the threads are daemons, so Ctrl-C or a deadline never waits for a stalled model
call. Evaluations are what a search is bound by. They go to an evaluation executor
(`Evaluations`): worker slots on this machine (`harness.execution.local_slots`) or Ray tasks on a cluster
(`harness.execution.ray_executor`). Both take the same plain-data `EvalJob` (program text, suites, cascade
floor), run the same `run_job` in a worker process, and hand back a future of `(status,
Evaluation)`. So the controller -- the single writer of the run -- neither knows nor records where
an evaluation ran, and a run moves between executors unchanged.

Both treat a lost worker alike: a worker that dies mid-evaluation gets its job run once more on a
fresh one (`WORKER_RETRIES`), then the candidate is failed with the reason (`lost`) and the run
goes on.
"""
from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from evaluator.evaluate import EvalOptions, evaluate
from evaluator.records import Evaluation
from evaluator.sandbox import isolation
from evaluator.workloads.scenarios import Scenario
from harness.store.status import Status

WORKER_RETRIES = 1  # runs of a job after the first when the worker running it dies


class LocalExecutor:
    """`submit(fn, *args) -> Future` on `workers` daemon threads."""

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"eplb-worker-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as error:  # handed to the controller, which decides
                future.set_exception(error)

    def shutdown(self) -> None:
        """Stop taking jobs; threads still busy finish on their own (they are daemons)."""
        for _ in self._threads:
            self._jobs.put(None)


# -- what an evaluation is ----------------------------------------------------------------------

@dataclass(frozen=True)
class Suites:
    """What candidates are scored on: the run's suite, and the quick screen of the cascade."""

    name: str
    scenarios: tuple[Scenario, ...]
    options: EvalOptions
    quick: tuple[Scenario, ...] | None = None  # None: no cascade
    cascade_margin: float = 0.05


@dataclass(frozen=True)
class EvalJob:
    """One evaluation as plain data (no paths, no open handles), so any executor can run it on any
    machine: it is pickled as it is to a local worker process or a Ray task."""

    code: str
    filename: str  # what tracebacks call the program, e.g. attempt_000012.py
    suites: Suites
    screen_floor: float | None = None  # cascade: the best quick score so far


class Evaluations(Protocol):
    """An evaluation executor: `slots` evaluations at once, candidates run on `device`."""

    slots: int
    device: str  # "cpu" or "cuda", as resolved where the candidates run

    def submit(self, job: EvalJob) -> Future:
        """A future of (Status, Evaluation); it fails only if the evaluator itself broke."""

    def shutdown(self) -> None:
        """Stop taking jobs; evaluations still running are abandoned."""


def evaluate_with_cascade(path: Path, suites: Suites, screen_floor: float | None) -> tuple[Status, Evaluation]:
    """(status, evaluation). With a cascade, the quick suite screens first; only a valid program whose
    quick score is within the margin of `screen_floor` gets the full suite."""
    if suites.quick is not None:
        quick = evaluate(path, list(suites.quick), "quick", suites.options)
        if not quick.valid:
            return Status.INVALID, quick
        if screen_floor is not None and quick.combined_score < screen_floor * (1 - suites.cascade_margin):
            return Status.SCREENED, quick
    full = evaluate(path, list(suites.scenarios), suites.name, suites.options)
    if suites.quick is not None:
        full = replace(full, extra={**full.extra, "quick_combined_score": quick.combined_score})
    return (Status.VALID if full.valid else Status.INVALID), full


def run_job(job: EvalJob) -> tuple[Status, Evaluation]:
    """Run one job in this process. The program goes to a private temporary file because the
    evaluator loads programs from files; its name is the job's, for tracebacks."""
    with tempfile.TemporaryDirectory(prefix="eplb-candidate-") as folder:
        path = Path(folder) / job.filename
        path.write_text(job.code, encoding="utf-8")
        return evaluate_with_cascade(path, job.suites, job.screen_floor)


def failed(suites: Suites, reason: str) -> tuple[Status, Evaluation]:
    """The record of an evaluation that gave no result (the evaluator broke, or the worker running
    it was lost): the candidate is invalid with the reason, and the run goes on."""
    options = suites.options
    return Status.INVALID, Evaluation.invalid(reason, f"INVALID: {reason}", device=options.device,
                                         sandbox=isolation.resolve_sandbox(options.limits.sandbox), suite=suites.name,
                                         heldout=False)


def foreign_windows(suites: Suites, evaluation: Evaluation) -> str | None:
    """Why `evaluation` (made on another machine) cannot stand beside this machine's, or None.

    Synthetic windows are generated where the evaluation runs, and NumPy versions and CPUs can
    generate different ones (Scenario.windows_digest); a score on other windows is not comparable.
    """
    ours = {s.name: s for s in (*suites.scenarios, *(suites.quick or ()))}
    for result in evaluation.scenarios:
        scenario = ours.get(result.name)
        if scenario is None or result.windows_digest is None:
            continue
        expected = scenario.windows_digest(evaluation.heldout)
        if result.windows_digest != expected:
            return (f"scored on other windows than the controller's ({result.name}: digest "
                    f"{result.windows_digest}, expected {expected}); the worker's NumPy generates different "
                    f"synthetic windows: install the controller's NumPy version on every node")
    return None


def lost(suites: Suites, worker: str, why: str) -> tuple[Status, Evaluation]:
    """The record of an evaluation whose `worker` died on every try."""
    return failed(suites, f"evaluation lost: the {worker} running it died on all {1 + WORKER_RETRIES} tries ({why})")
