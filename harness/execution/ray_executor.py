"""Evaluations as Ray tasks: a search bigger than one machine (the optional `ray` extra).

Each evaluation is one task that receives the job as plain data (the program's text, not a path,
and the suites) and returns `Evaluation.to_dict()`; the worker runs the same `run_job` as a local
slot, so it starts a fork server of its own on first use and every candidate there is isolated
exactly as on the controller's machine. The controller stays the only writer of the run directory,
which exists on its machine alone: workers need the package installed, never the run.

A task asks Ray for `threads` CPUs and, on cuda, one GPU; Ray then never runs two tasks on the
same GPU (it sets CUDA_VISIBLE_DEVICES for each, which the candidate inherits) nor more tasks on a
node than it has CPUs. Ray does not pin tasks to cores; the evaluator does: each evaluation claims
free cores of its node machine-wide for as long as it runs (evaluator.timing.cores), so two timed runs on
one node never share a core; see docs/scaling.md.

Windows: synthetic windows are generated on the worker, and another NumPy can generate other ones;
an evaluation whose windows digest differs from the controller's is recorded as failed, with a
reason that says to align NumPy versions, rather than mixed with comparable scores.

Faults: a task whose worker process or node dies is run once more (Ray's `max_retries`, on any
node that can take it), then the candidate is failed with a reason naming the loss, and the run
goes on. An exception raised by the evaluator itself is not retried: it reaches the controller,
which records the candidate as failed, as it does locally.
"""
from __future__ import annotations

import socket
from concurrent.futures import Future

import ray
from ray import exceptions

from evaluator.errors import UserError
from evaluator.records import Evaluation
from evaluator.sandbox import privileges
from harness.execution.executors import WORKER_RETRIES, EvalJob, failed, foreign_windows, lost, run_job
from harness.store.status import Status

PROBE_S = 5.0  # how long a head address may take to accept a connection


@ray.remote(max_retries=WORKER_RETRIES, retry_exceptions=False)
def evaluate_task(job: EvalJob) -> tuple[Status, dict]:
    status, evaluation = run_job(job)
    return status, evaluation.to_dict()


class RayEvaluations:
    """`submit(job)` as a Ray task; `slots` of them at once (the controller keeps to it)."""

    def __init__(self, slots: int, device: str, threads: int, owns_ray: bool) -> None:
        self.slots, self.device = slots, device
        self._threads = threads
        self._owns_ray = owns_ray  # started or joined Ray here, so leaves it at shutdown
        self._running: set[ray.ObjectRef] = set()

    @classmethod
    def connect(cls, address: str | None, requested_device: str, threads: int,
                workers: int | None) -> RayEvaluations:
        """Join the cluster at `address` (or use the Ray this process already joined), resolve the
        device against the cluster's resources, and size the slots."""
        privileges.set_dumpable(False)  # as for local workers: candidates may share this machine and uid
        owns = not ray.is_initialized()
        if owns:
            _probe(address)
            try:
                ray.init(address=address, logging_level="WARNING")
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise UserError(f"--ray-address {address or '(default)'}: cannot join a Ray cluster ("
                                f"{' '.join(str(error).split())[:300]}); start one with 'ray start --head' "
                                f"or pass its address") from None
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        device = "cuda" if requested_device == "cuda" or (requested_device == "auto" and gpus) else "cpu"
        if device == "cuda" and not gpus:
            raise UserError("[evaluator] device = \"cuda\" but the Ray cluster has no GPU resources; add GPU "
                            "nodes (ray start --num-gpus N) or use \"auto\" or \"cpu\"")
        fit = gpus if device == "cuda" else cpus // threads
        if fit < 1:
            raise UserError(f"the Ray cluster has {cpus} CPUs, fewer than [evaluator] threads = {threads} that "
                            f"one evaluation asks for; lower threads or add nodes")
        return cls(workers or fit, device, threads, owns)

    def submit(self, job: EvalJob) -> Future:
        ref = evaluate_task.options(num_cpus=self._threads, num_gpus=1 if self.device == "cuda" else 0).remote(job)
        self._running.add(ref)
        result: Future = Future()
        ref.future().add_done_callback(lambda done: self._settle(ref, job, done, result))
        return result

    def _settle(self, ref: ray.ObjectRef, job: EvalJob, done: Future, result: Future) -> None:
        self._running.discard(ref)
        try:
            status, data = done.result()
        except exceptions.RayTaskError as error:  # the evaluator raised: its own exception, as locally
            result.set_exception(error.cause if isinstance(error.cause, BaseException) else error)
        except exceptions.RayError as error:  # the worker or node died, on every try
            why = " ".join(str(error).split())[:300]
            result.set_result(lost(job.suites, "Ray worker", f"{type(error).__name__}: {why}"))
        else:
            evaluation = Evaluation.from_dict(data)
            mismatch = foreign_windows(job.suites, evaluation)
            result.set_result(failed(job.suites, mismatch) if mismatch else (status, evaluation))

    def shutdown(self) -> None:
        """Cancel the tasks still running (a stopped run has no use for them), then leave Ray if
        this executor joined it."""
        for ref in list(self._running):
            ray.cancel(ref, force=True)
        if self._owns_ray:
            ray.shutdown()


def _probe(address: str | None) -> None:
    """A HOST:PORT address that accepts no connection is one clear line now; Ray itself would retry
    for minutes. (None and "auto" follow Ray's own lookup, which fails fast.)"""
    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_S).close()
    except OSError as error:
        raise UserError(f"--ray-address {address}: nothing answers there ({error}); pass the head's address "
                        f"(HOST:6379 on the cluster, ray://HOST:10001 from outside it)") from None
