"""Evaluations on this machine: worker slots, each with cores (and on cuda a GPU) of its own.

Measurement honesty comes before throughput (docs/scaling.md):
- A slot is `threads` physical cores (with their hyperthread siblings: two threads on one core
  share its execution units, and so each other's timings), disjoint from every other slot's, plus
  on cuda one GPU of its own. The candidate's child pins itself to the slot's CPUs and sees only its
  GPU (`Limits.cpus`, `Limits.gpu`), so two timed runs never share a core or a GPU. Asking for more
  workers than there are slots is an error, never oversubscription.
- A slot's evaluations run in a worker process of their own (`SlotWorker`), pinned to the same
  cores, with a fork server of its own. Not on a thread of the controller: the parent-side clock
  that checks each call's timing must never wait for the GIL while the controller, or another
  evaluation, runs Python. (Measured: one busy Python thread beside an evaluation stretched its
  round trips from 25 ms to 200 ms, and honest calls failed as "timing tampering".)

A worker process is started once per slot and per harness process, then reused, like the fork
servers (a resumed or repeated run in the same process pays its ~2 s start once); one that died is
replaced on next use, and a job whose worker died is run once more on the new one. Workers live in
sessions of their own (Ctrl-C is the controller's to handle) and exit when the controller does,
even after a SIGKILL (they watch a lifeline pipe), taking their fork servers and candidates along.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from evaluator.errors import UserError
from evaluator.evaluate import resolve_device
from evaluator.records import Evaluation
from evaluator.sandbox import privileges, proctree
from evaluator.timing.cores import core_slots, physical_cores
from harness.execution.executors import WORKER_RETRIES, EvalJob, LocalExecutor, Suites, lost, run_job

JOIN_S = 5.0  # how long to wait for a dead worker's exit status
ROOT = Path(__file__).resolve().parent.parent  # where a worker imports `harness` and `evaluator` from


@dataclass(frozen=True)
class Slot:
    """Where one local evaluation runs: cores of its own and, on cuda, a GPU of its own."""

    cpus: tuple[int, ...]
    gpu: str | None = None  # a CUDA_VISIBLE_DEVICES entry

    def pin(self, suites: Suites) -> Suites:
        """`suites` with the candidate placed on this slot."""
        limits = replace(suites.options.limits, cpus=self.cpus, gpu=self.gpu)
        return replace(suites, options=replace(suites.options, limits=limits))


def plan_slots(workers: int | None, threads: int, cores: Sequence[Sequence[int]],
               gpus: Sequence[str] | None) -> tuple[Slot, ...]:
    """`workers` disjoint slots of `threads` physical cores each (None: as many as fit; `cores`
    lists each core's CPUs), plus one GPU each when `gpus` is given (cuda). One slot always fits:
    alone, it shares with no other timed run."""
    groups = core_slots(cores, threads)
    fit = len(groups)
    if gpus is not None:
        fit = min(fit, len(gpus))
    count = fit if workers is None else workers
    if count > fit:
        has = f"{len(cores)} cores" + (f" and {len(gpus)} GPUs" if gpus is not None else "")
        raise UserError(f"workers = {count}: this machine has {has}, room for {fit} evaluations at once with "
                        f"[evaluator] threads = {threads} (timed runs never share a core or a GPU); "
                        f"pass --workers {fit} or fewer, or lower threads")
    return tuple(Slot(groups[i], None if gpus is None else gpus[i]) for i in range(count))


def visible_gpus() -> list[str]:
    """This process's GPUs, as the CUDA_VISIBLE_DEVICES entries that name them to a child."""
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [name.strip() for name in listed.split(",")][:count]


# -- worker processes ----------------------------------------------------------------------------

class WorkerLost(Exception):
    """The worker process died before it answered; the message says how."""


class SlotWorker:
    """The process that runs one slot's evaluations, one at a time (any thread may call it).

    A plain `python -c` child in a session of its own: Ctrl-C at the terminal reaches only the
    controller, which handles it, and no worker prints a KeyboardInterrupt traceback halfway
    through its start-up. Jobs and answers cross a socket as pickles (trusted on both ends).
    """

    def __init__(self, cpus: tuple[int, ...]) -> None:
        ours, theirs = socket.socketpair()
        lifeline, self._lifeline = os.pipe()  # never written: its EOF says the controller is gone
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(ROOT), str(theirs.fileno()), str(lifeline), ",".join(map(str, cpus))],
            pass_fds=(theirs.fileno(), lifeline), stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        os.close(lifeline)
        self._jobs = Connection(ours.detach())
        self._lock = threading.Lock()
        self._lost = False

    @property
    def alive(self) -> bool:
        return not self._lost and self._process.poll() is None

    @property
    def pid(self) -> int:
        return self._process.pid

    def evaluate(self, job: EvalJob) -> tuple[str, Evaluation]:
        """Run `job` there: WorkerLost if the process dies first, the evaluator's exception if it raised."""
        with self._lock:
            try:
                self._jobs.send(job)
                ok, answer = self._jobs.recv()
            except (EOFError, OSError):
                self._lost = True
                self._jobs.close()
                os.close(self._lifeline)  # so that it exits, if it has not
                try:
                    code = self._process.wait(JOIN_S)
                except subprocess.TimeoutExpired:
                    code = None
                raise WorkerLost(_ending(code)) from None
        if not ok:
            raise answer
        return answer


def _ending(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); from harness.execution.local_slots import serve; "
         "serve(int(sys.argv[2]), int(sys.argv[3]), tuple(int(c) for c in sys.argv[4].split(',')))")


def serve(jobs_fd: int, lifeline_fd: int, cpus: tuple[int, ...]) -> None:
    """The worker process: evaluate each job it is sent until the controller hangs up."""
    os.sched_setaffinity(0, cpus)  # before any thread or child: they all inherit it
    privileges.set_dumpable(False)  # its environment is the controller's, API key included
    threading.Thread(target=_exit_with_controller, args=(lifeline_fd,), daemon=True).start()
    jobs = Connection(jobs_fd)
    while True:
        try:
            job = jobs.recv()
        except EOFError:
            return
        try:
            answer = (True, run_job(job))
        except Exception as error:  # the evaluator itself broke: the controller records it
            answer = (False, error)
        try:
            jobs.send(answer)
        except Exception:  # an exception that does not pickle: its text does
            jobs.send((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}")))


def _exit_with_controller(lifeline_fd: int) -> None:
    """Block until the controller's end of the lifeline closes (it exited or died), then exit. Its
    fork servers are killed first: they would notice and kill their candidates anyway, but one still
    starting would first print a traceback on the user's terminal."""
    while os.read(lifeline_fd, 1):
        pass
    for server in proctree.children(os.getpid()):
        os.kill(server, signal.SIGKILL)
    os._exit(0)


_workers: dict[tuple[int, ...], SlotWorker] = {}
_workers_lock = threading.Lock()


def worker_for(cpus: tuple[int, ...]) -> SlotWorker:
    """The live worker process for these cores, started (or replaced, if it died) now."""
    with _workers_lock:
        worker = _workers.get(cpus)
        if worker is None or not worker.alive:
            worker = _workers[cpus] = SlotWorker(cpus)
        return worker


# -- the executor ---------------------------------------------------------------------------------

class LocalEvaluations:
    """Evaluations on this machine: each job takes a free slot and runs on its worker process."""

    def __init__(self, slots: Sequence[Slot], device: str) -> None:
        self.slots, self.device = len(slots), device
        # Candidates may run under the controller's uid, and the controller's environment holds
        # the API key: hide its /proc/<pid>/environ, as the fork servers hide theirs.
        privileges.set_dumpable(False)
        self._free: queue.SimpleQueue[Slot] = queue.SimpleQueue()
        for slot in slots:
            worker_for(slot.cpus)  # started now: they warm up while the first job is prepared
            self._free.put(slot)
        self._waiters = LocalExecutor(len(slots))  # threads that only wait for the workers' answers

    @classmethod
    def on_this_machine(cls, requested_device: str, threads: int, workers: int | None) -> LocalEvaluations:
        device = resolve_device(requested_device, "[evaluator] device")
        gpus = visible_gpus() if device == "cuda" else None
        return cls(plan_slots(workers, threads, physical_cores(os.sched_getaffinity(0)), gpus), device)

    def submit(self, job: EvalJob) -> Future:
        return self._waiters.submit(self._run, job)

    def _run(self, job: EvalJob) -> tuple[str, Evaluation]:
        slot = self._free.get()  # never waits: there are as many threads as slots
        job = replace(job, suites=slot.pin(job.suites))
        try:
            for _ in range(1 + WORKER_RETRIES):
                try:
                    return worker_for(slot.cpus).evaluate(job)
                except WorkerLost as error:
                    why = str(error)
            return lost(job.suites, "worker process", why)
        finally:
            self._free.put(slot)

    def shutdown(self) -> None:
        """Stop taking jobs. The worker processes stay for later runs in this process; they end
        with it."""
        self._waiters.shutdown()
