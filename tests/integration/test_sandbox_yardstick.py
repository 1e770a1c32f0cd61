"""The yardstick beside each call: timed by the keeper on the candidate's core, with the candidate
stopped, so nothing a candidate leaves running between calls can slow it (and so flatter itself)."""
from __future__ import annotations

import os
import threading
import time

import pytest
from sandbox_support import ARGS, program, window

from evaluator.sandbox.candidate_process import CandidateFailure, CandidateProcess, Limits

CORE = (max(os.sched_getaffinity(0)),)
PINNED = Limits(call_timeout_s=10, cpus=CORE)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def _spinners_on_core() -> list[int]:
    """Pids of running (or stopped) processes other than this one whose affinity is exactly CORE."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(entry) != os.getpid() and os.sched_getaffinity(int(entry)) == set(CORE) \
                    and _state(int(entry)) in "RT":
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_burners_left_between_calls_are_stopped_while_the_yardstick_runs_then_resumed(tmp_path):
    with CandidateProcess(program("burn_between_calls", tmp_path), PINNED) as burner:
        burner.start()
        burner.call(window(0), *ARGS)
        time.sleep(0.2)  # let the burners get going
        [spinner] = _spinners_on_core()  # the forked burner (the thread's process mostly sleeps in recv)
        seen: set[str] = set()
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                seen.add(_state(spinner))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for _ in range(20):
                burner.yardstick_ms()
        finally:
            done.set()
            watcher.join()
        assert "T" in seen  # stopped while the keeper timed the yardstick...
        time.sleep(0.05)
        assert _state(spinner) == "R"  # ...and running again afterwards
        assert burner.call(window(1), *ARGS).phy2log.shape == (4, 24)


def test_yardstick_is_in_milliseconds_and_needs_a_running_candidate(tmp_path):
    with CandidateProcess(program("honest", tmp_path), PINNED) as candidate:
        with pytest.raises(CandidateFailure, match="not running"):
            candidate.yardstick_ms()
        candidate.start()
        assert 0.1 < candidate.yardstick_ms() < 1000


def test_a_child_that_exits_between_calls_fails_at_the_yardstick(tmp_path):
    with CandidateProcess(program("exit_between_calls", tmp_path), PINNED) as candidate:
        candidate.start()
        candidate.call(window(0), *ARGS)
        time.sleep(0.5)
        with pytest.raises(CandidateFailure) as caught:
            candidate.yardstick_ms()
    assert caught.value.reason == "exited with status 9 during the timing reference after call 1"
