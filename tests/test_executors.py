"""The local worker pool: results and errors reach the controller, work runs in parallel, and a
stalled job never holds up shutdown or the interpreter's exit."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import pytest

from harness.executors import LocalExecutor

ROOT = Path(__file__).resolve().parent.parent


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
              "from harness.executors import LocalExecutor\n"
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
