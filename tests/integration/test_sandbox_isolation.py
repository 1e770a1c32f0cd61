"""Holes an adversarial review found in the sandbox's isolation, each attacked for real by a program in
tests/hostile, in every sandbox that can run here: importing the evaluator's own code, working on a
window outside the timed span, flooding the process table, one candidate killing another, leaving
its cores, reading root-only files, keeping RAM outside its cap, forging the report with terminal
escapes, and hanging the failure report. Plus the previous placement, passed to programs that ask."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from sandbox_support import ARGS, FAST, SANDBOXES, failure, in_sandbox, printed, program, window

from evaluator.errors import UserError
from evaluator.sandbox import isolation, privileges, uids
from evaluator.sandbox.candidate_process import CandidateProcess, Limits

TAMPERING = r"timing tampering: child reported \d+\.\d{3} ms, parent measured \d+\.\d{3} ms in call 1"
OWN_UIDS = pytest.mark.skipif(not privileges.can_switch_user(),
                              reason="candidates get uids of their own only when the evaluator is root")


def _run(path: Path, limits: Limits, calls: int = 1) -> str:
    """Start `path`, make `calls` calls; the captured output."""
    with CandidateProcess(path, limits) as candidate:
        candidate.start()
        for i in range(calls):
            candidate.call(window(i), *ARGS)
        return candidate.output()


def _unprintable(text: str, allowed: str = "") -> list[str]:
    return [char for char in text if not char.isprintable() and char not in allowed]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_evaluators_own_packages_cannot_be_imported(tmp_path, sandbox):
    facts = printed(_run(program("import_evaluator", tmp_path), in_sandbox(sandbox)), "IMPORTS")
    assert facts["evaluator.workloads.scenarios"] == facts["harness"] == facts["evaluator"] \
        == "ModuleNotFoundError"
    assert [facts[name] for name in ("torch", "numpy", "sqlite3", "zoneinfo", "torch.utils.benchmark")] \
        == ["ok"] * 5
    assert facts["root"], "control: it found where the child's own code lives"
    if sandbox == "bwrap":  # not even by path: the files are not in its view
        assert facts["by_path"] == "ModuleNotFoundError"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_work_done_when_the_window_arrives_is_inside_the_timed_span(tmp_path, sandbox):
    exc, _ = failure(program("compute_on_arrival", tmp_path), in_sandbox(sandbox))
    assert re.fullmatch(TAMPERING, exc.reason), exc.reason
    assert float(re.findall(r"(\d+\.\d+) ms", exc.reason)[1]) >= 300.0


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_fork_flood_stops_at_the_process_limit_and_orphans_are_reaped_at_once(tmp_path, sandbox):
    limits = replace(in_sandbox(sandbox), max_processes=32)
    facts = printed(_run(program("fork_flood", tmp_path, forks="150", orphans="20"), limits), "FLOOD")
    assert facts["orphans"] == 20 and facts["zombies_under_keeper"] == 0
    # sharing the user's uid, the limit counts the user's own processes too, as they were at its start
    slack = 0 if privileges.can_switch_user() else 4
    assert facts["error"] == "BlockingIOError" and facts["forked"] < 32 + slack


@OWN_UIDS
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_concurrent_candidates_have_uids_of_their_own_and_cannot_kill_each_other(tmp_path, sandbox):
    limits = in_sandbox(sandbox)
    (tmp_path / "victim").mkdir()
    (tmp_path / "attacker").mkdir()
    with CandidateProcess(program("neighbour", tmp_path / "victim", victim=""), limits) as victim:
        victim.start()
        prey = printed(victim.output(), "NEIGHBOUR")
        attacker = printed(_run(program("neighbour", tmp_path / "attacker", victim=str(prey["pid"])),
                                limits), "NEIGHBOUR")
        assert attacker["kill"] == "PermissionError"
        assert victim.call(window(1), *ARGS).phy2log.shape == (4, 24)  # alive and well
    assert prey["uid"] != attacker["uid"]
    assert {prey["uid"], attacker["uid"]} <= set(uids.candidate_uids())


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to leave one for another")
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_candidate_cannot_leave_its_cores(tmp_path, sandbox):
    core = (max(os.sched_getaffinity(0)),)
    limits = replace(in_sandbox(sandbox), cpus=core)
    facts = printed(_run(program("escape_cores", tmp_path), limits), "ESCAPE")
    assert (facts["self"], facts["thread"], facts["taskset"]) == ("PermissionError", "PermissionError", "refused")
    assert facts["cpus"] == list(core)


@OWN_UIDS
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_root_only_files_stay_unreadable_and_no_capability_is_kept(tmp_path, sandbox):
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    (private / "secret").write_text("root's secret")
    path = program("read_root_only", tmp_path, secret=str(private / "secret"))
    facts = printed(_run(path, in_sandbox(sandbox)), "ROOT_ONLY")
    assert not facts["shadow"].startswith("read") and not facts["secret"].startswith("read")
    assert facts["caps"] == 0


def _hidden_folder_above(path: str) -> str | None:
    """A folder above `path` that other users cannot enter, if any."""
    for folder in Path(os.path.realpath(path)).parents:
        if not os.stat(folder).st_mode & 0o001:
            return str(folder)
    return None


@OWN_UIDS
def test_the_process_sandbox_is_refused_with_the_fix_where_candidates_cannot_read_python(tmp_path):
    hidden = _hidden_folder_above(sys.base_prefix)
    if hidden is None:
        pytest.skip("every user can read Python here")
    with pytest.raises(UserError) as caught:
        CandidateProcess(program("honest", tmp_path), replace(FAST, sandbox="process")).start()
    message = str(caught.value)
    assert "\n" not in message and "cannot read " + os.path.realpath(sys.base_prefix) in message
    assert "use --sandbox bwrap" in message


def _live_segments(ids: list[int]) -> list[int]:
    with open("/proc/sysvipc/shm") as table:
        return [int(line.split()[1]) for line in table.readlines()[1:] if int(line.split()[1]) in ids]


@OWN_UIDS
@pytest.mark.parametrize("where", ["files", "segments"])
def test_ram_in_shared_memory_counts_against_the_cap_and_leftovers_are_removed(tmp_path, where):
    limits = in_sandbox("process", replace(FAST, memory_mb=128, call_timeout_s=20))
    marker = uuid.uuid4().hex
    sizes = {"mib": "320", "sysv_mib": "16"} if where == "files" else {"mib": "64", "sysv_mib": "96"}
    leftovers = [f"/tmp/eplb-left-{marker}", f"/var/tmp/eplb-left-{marker}", f"/dev/shm/eplb-left-{marker}",
                 f"/tmp/eplb-left-dir-{marker}"]
    segments: list[int] = []
    try:
        exc, _ = failure(program("shared_memory", tmp_path, marker=marker, hog_dir="/dev/shm", **sizes), limits)
        facts = printed(exc.detail, "SHM")
        segments = facts.pop("sysv")
        assert set(facts.values()) == {"ok"} and len(segments) == int(sizes["sysv_mib"]) // 16, \
            "control: it left its files and segments"
        assert exc.reason == "killed: memory limit of 128 MB exceeded during call 1"
        assert "SHM-WRITTEN" not in exc.detail
        assert [path for path in leftovers if os.path.lexists(path)] == []
        assert glob.glob(f"/dev/shm/eplb-hog-{marker}-*") == [] and _live_segments(segments) == []
    finally:  # on a failure, do not leave hundreds of MiB of RAM behind
        for path in glob.glob(f"/dev/shm/eplb-hog-{marker}-*") + leftovers:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
        for shmid in _live_segments(segments):
            subprocess.run(["ipcrm", "-m", str(shmid)], check=False)


@OWN_UIDS
def test_ram_in_a_home_on_tmpfs_counts_against_the_cap(tmp_path):
    limits = in_sandbox("bwrap", replace(FAST, memory_mb=128, call_timeout_s=20))  # its HOME is on tmpfs
    exc, _ = failure(program("shared_memory", tmp_path, mib="320", sysv_mib="0", marker=uuid.uuid4().hex,
                             hog_dir="HOME"), limits)
    assert exc.reason == "killed: memory limit of 128 MB exceeded during call 1"
    assert "SHM-WRITTEN" not in exc.detail


def test_candidate_text_cannot_drive_the_terminal(tmp_path):
    exc, _ = failure(program("ansi_spoof", tmp_path))
    # the type name as it is; the message with its whitespace (newlines too) folded into spaces
    assert exc.reason.startswith("Forged\\x1b[2K\\rvalid: yes\\n in call 1: \\x1b[2K \\x1b[1A")
    assert _unprintable(exc.reason) == [] and exc.reason.endswith("0.9990\\x1b[0m\\u202e")
    assert "\\x1b[2J\\x1b[H" in exc.detail and _unprintable(exc.detail, allowed="\n\t") == []
    assert "\n  combined_score 0.9990\n" in exc.detail  # multi-line text keeps its lines


def test_an_exception_whose_str_hangs_is_reported_within_seconds(tmp_path):
    exc, elapsed = failure(program("hanging_str", tmp_path), replace(FAST, call_timeout_s=30))
    assert exc.reason == "Hanging in call 1: formatting the exception timed out after 2 s"
    assert elapsed < 15


@pytest.mark.parametrize("parameter", ["old_global_expert_indices=None", "**options"])
def test_a_program_that_takes_the_previous_placement_gets_it(tmp_path, parameter):
    previous = (torch.arange(4 * 24) % 16).reshape(4, 24)
    with CandidateProcess(program("previous_placement", tmp_path, parameter=parameter), FAST) as candidate:
        candidate.start()
        candidate.call(window(0), *ARGS)
        candidate.call(window(1), *ARGS, previous=previous)
        output = candidate.output()
    assert re.findall(r"PREVIOUS=(.*)", output) == ["None", f"(4, 24),{int(previous.sum())}"]


def test_a_program_with_the_plain_signature_is_called_with_five_arguments(tmp_path):
    with CandidateProcess(program("honest", tmp_path), FAST) as candidate:
        candidate.start()
        result = candidate.call(window(0), *ARGS, previous=torch.zeros(4, 24, dtype=torch.int64))
    assert result.phy2log.shape == (4, 24)


def test_the_default_is_bwrap_where_it_works_here():
    try:
        isolation.bwrap_executable()
        expected = "bwrap"
    except UserError:
        expected = "process"  # with a notice on stderr: see test_sandbox_exit
    assert CandidateProcess(Path("unused.py"), Limits()).sandbox == expected
