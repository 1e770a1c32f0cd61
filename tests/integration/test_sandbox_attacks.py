"""CandidateProcess against programs that game the score or attack the evaluator: timing lies,
memoisation, input mutation, peeking at other windows, secrets, and processes left behind."""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid

import pytest
import torch
from sandbox_support import (
    ARGS,
    FAST,
    failure,
    in_sandbox,
    processes_named,
    program,
    wait_until_gone,
    wait_until_present,
    window,
)

from evaluator.sandbox import privileges, uids
from evaluator.sandbox.candidate_process import CandidateFailure, CandidateProcess, Limits

TAMPERING = r"timing tampering: child reported \d+\.\d{3} ms, parent measured \d+\.\d{3} ms in call \d+"


def _run(path, calls, limits=FAST):
    """Start `path`, make one call per window in `calls`; the results and the captured output."""
    with CandidateProcess(path, limits) as candidate:
        candidate.start()
        results = [candidate.call(w, *ARGS) for w in calls]
        return results, candidate.output()


def test_honest_runtime_is_the_childs_precise_figure(tmp_path):
    results, _ = _run(program("honest_sleep", tmp_path), [window(0), window(1)])
    for result in results:
        assert 0.2 <= result.runtime_s <= result.round_trip_s < 0.5
        assert result.runtime_s == result.reported_s or result.runtime_s - result.reported_s < 0.02


@pytest.mark.parametrize("name", ["clock_patch", "wire_patch"])
def test_patching_the_clock_or_the_child_is_caught(tmp_path, name):
    exc, _ = failure(program(name, tmp_path))
    assert re.fullmatch(TAMPERING, exc.reason) and exc.reason.endswith("in call 1"), exc.reason
    claimed, measured = map(float, re.findall(r"(\d+\.\d+) ms", exc.reason))
    assert claimed < 1.0 and measured >= 300.0


def test_a_small_lie_gains_almost_nothing(tmp_path):
    try:
        results, _ = _run(program("subtle_lie", tmp_path), [window(0), window(1), window(2)])
    except CandidateFailure as exc:  # scheduling noise on a loaded machine can expose it outright
        assert re.fullmatch(TAMPERING, exc.reason), exc.reason
        return
    for result in results:  # it lied by 5 ms; the figure we keep has most of them back
        assert result.runtime_s - result.reported_s >= 0.003
        assert result.runtime_s >= 0.06 - 0.002


def test_memoising_by_input_gains_nothing_on_distinct_windows_nor_in_a_later_process(tmp_path):
    path = program("memoise", tmp_path)
    distinct, _ = _run(path, [window(0), window(1), window(2), window(0)])
    assert all(r.runtime_s >= 0.2 for r in distinct[:3])
    assert distinct[3].runtime_s < 0.1  # control: a repeated window *is* served from its cache
    later, _ = _run(path, [window(0)])  # its HOME (and the cache files in it) went with the last
    assert later[0].runtime_s >= 0.2


def test_the_child_works_on_a_private_copy_of_the_window(tmp_path):
    weight = window(0)
    before = weight.clone()
    _run(program("mutate_input", tmp_path), [weight])
    assert torch.equal(weight, before)


def test_no_window_but_those_already_given_is_reachable_in_the_child(tmp_path):
    _, output = _run(program("peek_gc", tmp_path), [window(0), window(1), window(2)])
    assert output.count("UNSEEN-WINDOWS=0\n") == 3


def _probe(tmp_path, limits, **extra):
    """Run probe.py once; the facts it printed."""
    substitutions = {"read_target": str(tmp_path / "none"), "write_target": str(tmp_path / "w"),
                     "port": "9", "marker": uuid.uuid4().hex, **extra}
    _, output = _run(program("probe", tmp_path, **substitutions), [window(0)], limits)
    for leftover in (f"/tmp/eplb-probe-{substitutions['marker']}",
                     f"/dev/shm/eplb-probe-{substitutions['marker']}"):
        if os.path.exists(leftover):  # the process sandbox cannot stop this when not root
            os.unlink(leftover)
    return json.loads(output.split("PROBE=", 1)[1].splitlines()[0])


@pytest.mark.parametrize("threads", [1, 2])
def test_environment_is_an_allow_list_with_a_private_home_removed_afterwards(
        tmp_path, monkeypatch, threads):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-in-process-81d2")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.example:3128")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    facts = _probe(tmp_path, Limits(threads=threads))
    env = facts["env"]
    assert set(env) == {"PATH", "CUDA_VISIBLE_DEVICES", "LANG", "LC_ALL", "PYTHONUTF8",
                        "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                        "HOME", "TMPDIR"} | ({"LD_LIBRARY_PATH"} & set(os.environ))
    assert env["CUDA_VISIBLE_DEVICES"] == "3" and env["OMP_NUM_THREADS"] == str(threads)
    assert facts["torch_threads"] == threads
    assert env["HOME"] == env["TMPDIR"] == facts["cwd"] and facts["write_home"] == "ok"
    assert not os.path.exists(env["HOME"])


@pytest.mark.skipif(not privileges.can_switch_user(), reason="the child switches uid only under root")
def test_as_root_the_child_has_its_own_uid_no_capability_and_cannot_write_the_evaluators_files(tmp_path):
    target = tmp_path / "evaluator_module.py"
    target.write_text("original")
    facts = _probe(tmp_path, FAST, write_target=str(target))
    assert facts["uid"] in uids.candidate_uids() and facts["caps"] == 0
    assert facts["write_target"] in ("PermissionError", "FileNotFoundError")  # bwrap: not in its view
    assert target.read_text() == "original"


def test_secrets_in_the_evaluators_environment_never_reach_the_child(tmp_path, monkeypatch):
    secret = "sk-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("HTTPS_PROXY", f"http://{secret}@proxy.example:3128")
    results, output = _run(program("env_dump", tmp_path), [window(0)])
    loot = b"".join(t.numpy().tobytes() for t in (results[0].phy2log, results[0].log2phy,
                                                   results[0].logcnt))
    assert "HUNT home=" in output and "PATH=" in output  # it did hunt, and found the harmless
    assert secret not in output and secret.encode() not in loot


def test_a_double_forked_setsid_daemon_dies_with_the_evaluation(tmp_path):
    marker = f"eplb-daemon-{uuid.uuid4().hex}"
    with CandidateProcess(program("double_fork", tmp_path, marker=marker), FAST) as candidate:
        candidate.start()
        candidate.call(window(0), *ARGS)
        assert wait_until_present(marker), "control: the daemon is running before close()"
    assert processes_named(marker) == []  # close() returns only once everything is gone


def test_a_daemon_dies_when_the_call_times_out(tmp_path):
    marker = f"eplb-daemon-{uuid.uuid4().hex}"
    exc, _ = failure(program("daemon_then_hang", tmp_path, marker=marker),
                     Limits(call_timeout_s=0.5))
    assert exc.reason == "call 1 timed out after 0.5 s"
    assert processes_named(marker) == []


def test_killing_the_keeper_still_kills_the_candidate_and_its_daemon(tmp_path):
    marker = f"eplb-daemon-{uuid.uuid4().hex}"
    limits = in_sandbox("process", Limits(call_timeout_s=30))  # the keeper's pid as this test sees it
    with CandidateProcess(program("daemon_then_hang", tmp_path, marker=marker), limits) as candidate:
        candidate.start()
        end = time.monotonic() + 5
        while "KEEPER=" not in candidate.output() and time.monotonic() < end:
            time.sleep(0.01)
        keeper = int(re.search(r"KEEPER=(\d+)", candidate.output()).group(1))
        threading.Timer(0.2, os.kill, (keeper, signal.SIGKILL)).start()
        began = time.monotonic()
        with pytest.raises(CandidateFailure) as caught:
            candidate.call(window(0), *ARGS)
    assert caught.value.reason == "the sandbox keeper died unexpectedly during call 1"
    assert time.monotonic() - began < 5
    assert wait_until_gone(marker, 2) == []


def test_a_candidate_trying_to_kill_its_keeper_is_refused_or_cleaned_up(tmp_path):
    if privileges.can_switch_user():  # the child has a uid of its own: the kill is refused
        results, output = _run(program("kill_keeper", tmp_path), [window(0)])
        assert results[0].phy2log.shape == (4, 24)
        assert "KILL-KEEPER: PermissionError" in output
        return
    try:  # same uid: the kill works; the server then kills the orphaned child
        _run(program("kill_keeper", tmp_path), [window(0)])
    except CandidateFailure as exc:
        assert exc.reason == "the sandbox keeper died unexpectedly during call 1"
