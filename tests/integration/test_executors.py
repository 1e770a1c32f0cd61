"""The local worker pool: results and errors reach the controller, work runs in parallel, and a
stalled job never holds up shutdown or the interpreter's exit. Local evaluation slots: disjoint
cores and a GPU each, really applied to the candidate, never more slots than fit."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import replace
from pathlib import Path

import pytest
from paths import HOSTILE
from test_run_command import ROOT, cli, error_line

from evaluator.errors import UserError
from evaluator.evaluate import EvalOptions, evaluate
from evaluator.sandbox.candidate_process import Limits
from evaluator.sandbox.proctree import children
from evaluator.workloads.scenarios import Scenario, Shape
from evaluator.workloads.synthetic import SyntheticSource, TraceParams
from harness.execution.executors import EvalJob, LocalExecutor, Suites, foreign_windows
from harness.execution.local_slots import LocalEvaluations, Slot, plan_slots, worker_for
from harness.store.status import Status


def test_results_and_arguments_come_back_on_their_own_futures():
    pool = LocalExecutor(2)
    try:
        futures = [pool.submit(pow, base, 2) for base in range(10)]
        assert [f.result(timeout=5) for f in futures] == [b * b for b in range(10)]
    finally:
        pool.shutdown()


def test_exceptions_are_handed_over_not_raised_in_the_worker():
    pool = LocalExecutor(1)

    def fails() -> None:
        raise ValueError("the proposer broke")

    def interrupted() -> None:
        raise KeyboardInterrupt  # a BaseException must not kill the worker thread either

    try:
        first, second, third = pool.submit(fails), pool.submit(interrupted), pool.submit(len, "abc")
        with pytest.raises(ValueError, match="the proposer broke"):
            first.result(timeout=5)
        with pytest.raises(KeyboardInterrupt):
            second.result(timeout=5)
        assert third.result(timeout=5) == 3  # the single worker survived both
    finally:
        pool.shutdown()


def test_workers_run_jobs_at_the_same_time():
    pool = LocalExecutor(3)
    barrier = threading.Barrier(3, timeout=5)  # passes only if three jobs are running at once
    try:
        futures = [pool.submit(barrier.wait) for _ in range(3)]
        assert sorted(f.result(timeout=10) for f in futures) == [0, 1, 2]
    finally:
        pool.shutdown()


def test_a_finished_job_is_seen_while_another_is_still_stalled():
    pool = LocalExecutor(2)
    release = threading.Event()
    try:
        stalled = pool.submit(release.wait, 30)
        quick = pool.submit(sum, [1, 2, 3])
        done, pending = wait([stalled, quick], timeout=5, return_when=FIRST_COMPLETED)
        assert done == {quick} and pending == {stalled}
        started = time.monotonic()
        pool.shutdown()  # must not wait for the stalled job
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
    assert stalled.result(timeout=5) is True


def test_a_stalled_job_does_not_keep_the_process_alive():
    script = ("import threading, sys\n"
              "from harness.execution.executors import LocalExecutor\n"
              "pool = LocalExecutor(2)\n"
              "pool.submit(threading.Event().wait)\n"  # waits forever
              "pool.shutdown()\n"
              "print('exiting', flush=True)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "exiting"
    assert time.monotonic() - started < 20


def test_shutdown_stops_the_workers_once_idle():
    pool = LocalExecutor(2)
    assert pool.submit(int, "7").result(timeout=5) == 7
    pool.shutdown()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(t.is_alive() for t in pool._threads):
        time.sleep(0.01)
    assert not any(t.is_alive() for t in pool._threads)


# -- evaluation slots ---------------------------------------------------------------------------

def test_slots_are_disjoint_sets_of_whole_cores_of_the_thread_count_with_a_gpu_each():
    cores = [(0,), (1,), (2,), (3,), (4,), (5,), (6,)]  # 7 cores: 3 slots of 2, one core left over
    assert [s.cpus for s in plan_slots(None, 2, cores, None)] == [(0, 1), (2, 3), (4, 5)]
    on_gpus = plan_slots(None, 1, cores[:4], ["3", "5"])  # cuda: no more slots than GPUs
    assert [(s.cpus, s.gpu) for s in on_gpus] == [((0,), "3"), ((1,), "5")]
    assert plan_slots(1, 2, cores[:4], None) == (Slot((0, 1)),)
    # hyperthread siblings share a core's execution units: a slot takes whole cores
    assert [s.cpus for s in plan_slots(None, 1, [(0, 4), (1, 5), (2, 6), (3, 7)], None)] == [
        (0, 4), (1, 5), (2, 6), (3, 7)]
    # one slot always fits: a single evaluation shares a core with no other timed run
    assert plan_slots(None, 4, [(0,), (1,)], None) == (Slot((0, 1)),)


@pytest.mark.parametrize(("workers", "threads", "gpus", "room"),
                         [(3, 1, None, 2), (2, 2, None, 1), (2, 1, ["0"], 1)])
def test_more_workers_than_slots_is_one_line_saying_how_many_fit(workers, threads, gpus, room):
    with pytest.raises(UserError) as error:
        plan_slots(workers, threads, [(0,), (1,)], gpus)
    message = str(error.value)
    assert f"workers = {workers}" in message and f"--workers {room} or fewer" in message and "\n" not in message


def test_asking_the_command_line_for_more_workers_than_fit_is_one_line_and_no_run(tmp_path):
    line = error_line(cli("run", "--workers", "64", "--name", "x", "--runs-dir", tmp_path, "--suite", "quick"))
    assert "workers = 64" in line and "or fewer" in line
    assert list(tmp_path.iterdir()) == []


VECTORISED = ROOT / "evaluator" / "baselines" / "vectorized_seed.py"
TINY = Scenario("tiny", Shape(4, 32, 40, 4, 2, 8), "4 x 32 experts on 8 GPUs in 2 nodes",
                SyntheticSource(TraceParams(), 4, 32, 7, 4, 2))
# Each candidate waits (up to `patience` s) until as many have arrived as the folder expects, then fails
# with a report of where it ran: the cores it may use and the GPU it was shown.
# Each candidate holds its call for `hold` s, then fails with a report of where and when it ran: the
# cores it may use, the GPU it was shown, and its start and end on the wall clock. Candidates cannot
# meet (each has a private /tmp and its own uid), so their overlap is judged from the outside.
WHERE_AM_I = """
import os, time
def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    started = time.time()
    time.sleep({hold})
    raise RuntimeError("cpus=%s gpu=%s ran=%.3f-%.3f" % (sorted(os.sched_getaffinity(0)),
                       os.environ.get("CUDA_VISIBLE_DEVICES"), started, time.time()))
"""


def where_they_ran(slots: tuple[Slot, ...], jobs: int, hold: float) -> list[tuple[str, float, float]]:
    """Run `jobs` WHERE_AM_I candidates at once on `slots`: (cores and GPU, start, end) of each, by start."""
    code = WHERE_AM_I.format(hold=hold)
    suites = Suites("tiny", (TINY,), EvalOptions(limits=Limits(call_timeout_s=30.0), fresh_check=False))
    evaluations = LocalEvaluations(slots, "cpu")
    try:
        futures = [evaluations.submit(EvalJob(code, f"where_{i}.py", suites)) for i in range(jobs)]
        results = [f.result(timeout=90) for f in futures]
    finally:
        evaluations.shutdown()
    assert all(status is Status.INVALID for status, _ in results)
    found = [re.search(r"(cpus=.* gpu=\S+) ran=([\d.]+)-([\d.]+)", ev.error or "") for _, ev in results]
    assert all(found), [ev.error for _, ev in results]
    return sorted(((m.group(1), float(m.group(2)), float(m.group(3))) for m in found if m), key=lambda r: r[1])


def test_each_evaluation_runs_at_the_same_time_as_the_other_on_its_own_core_and_gpu():
    slots = plan_slots(2, 1, [(0,), (1,)], ["7", "9"])  # the GPU names only reach the environment here
    first, second = where_they_ran(slots, 2, hold=5)
    assert sorted([first[0], second[0]]) == ["cpus=[0] gpu=7", "cpus=[1] gpu=9"]
    assert second[1] < first[2]  # the second started before the first ended


def test_with_one_slot_evaluations_wait_their_turn():
    first, second = where_they_ran((Slot((1,)),), 2, hold=1)
    assert first[0] == second[0] == "cpus=[1] gpu=None"
    assert second[1] >= first[2]  # the second started after the first ended


def depth(pid: int) -> int:
    """Generations of processes below `pid` (a running evaluation: fork server, keeper, candidate)."""
    below = children(pid)
    return 1 + max(map(depth, below)) if below else 0


SLEEPY = VECTORISED.read_text() + "\n\ndef rebalance_experts(*args):\n    import time\n    time.sleep(60)\n"


def test_a_worker_killed_mid_evaluation_is_replaced_and_the_job_run_once_more_then_lost():
    slot = Slot((1,))
    evaluations = LocalEvaluations((slot,), "cpu")
    suites = Suites("tiny", (TINY,), EvalOptions(limits=Limits(call_timeout_s=50.0)))
    killed: list[int] = []
    try:
        future = evaluations.submit(EvalJob(SLEEPY, "sleepy.py", suites))
        deadline = time.monotonic() + 60
        while len(killed) < 2 and not future.done() and time.monotonic() < deadline:
            pid = worker_for(slot.cpus).pid
            if pid not in killed and depth(pid) >= 3:  # its candidate is running
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)
        status, evaluation = future.result(timeout=60)
        assert len(killed) == 2 and status is Status.INVALID
        assert evaluation.error == ("evaluation lost: the worker process running it died on all 2 tries "
                                    "(killed by SIGKILL)")
        again, _ = evaluations.submit(EvalJob(VECTORISED.read_text(), "vectorised.py", suites)).result(timeout=60)
        assert again is Status.VALID  # the slot has a live worker again
    finally:
        evaluations.shutdown()


def test_the_controller_hides_its_environment_and_its_workers_end_when_it_is_killed():
    script = ("import time\n"
              "from evaluator.sandbox import privileges\n"
              "from harness.execution.local_slots import LocalEvaluations, Slot, worker_for\n"
              "LocalEvaluations((Slot((0,)),), 'cpu')\n"
              "print(worker_for((0,)).pid, privileges.is_dumpable(), flush=True)\n"
              "time.sleep(60)\n")
    controller = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    pid, dumpable = controller.stdout.readline().split()
    assert dumpable == "False"  # candidates under its uid cannot read its /proc/<pid>/environ (the API key)
    worker = int(pid)
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait(timeout=10)
    controller.stdout.close()
    deadline = time.monotonic() + 20
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists()


def test_an_evaluation_on_other_windows_than_the_controllers_is_named(tmp_path):
    suites = Suites("tiny", (TINY,), EvalOptions(limits=Limits(call_timeout_s=30.0)))
    honest = tmp_path / "honest.py"
    honest.write_text((HOSTILE / "honest.py").read_text())
    made = evaluate(honest, list(suites.scenarios), "tiny", suites.options)
    assert made.valid and made.scenarios[0].windows_digest == TINY.windows_digest(False)
    assert foreign_windows(suites, made) is None
    elsewhere = replace(made, scenarios=(replace(made.scenarios[0], windows_digest="0123456789abcdef"),))
    reason = foreign_windows(suites, elsewhere)
    assert reason is not None and "digest 0123456789abcdef, expected" in reason and "NumPy" in reason
