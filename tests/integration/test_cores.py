"""evaluator.timing.cores: physical cores from sysfs, and cores claimed machine-wide while an evaluation
runs, with locks a candidate can neither hold nor turn against the evaluator."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from paths import REPO
from sandbox_support import ARGS, in_sandbox, printed, program, window

from evaluator.errors import UserError
from evaluator.sandbox import privileges
from evaluator.sandbox.candidate_process import CandidateProcess
from evaluator.timing import cores
from evaluator.timing.cores import claimed, physical_cores, slots_here


@pytest.fixture(autouse=True)
def private_locks(tmp_path, monkeypatch):
    """Claims in these tests live in their own lock folder, apart from concurrent evaluations."""
    monkeypatch.setattr(cores, "LOCK_DIR", tmp_path / "locks")


def test_this_machines_cores_are_read_from_sysfs():
    found = physical_cores(os.sched_getaffinity(0))
    assert sorted(cpu for core in found for cpu in core) == sorted(os.sched_getaffinity(0))
    assert physical_cores([10_000]) == [(10_000,)]  # a CPU sysfs knows nothing of is a core of its own


def test_slots_are_whole_cores_of_this_process_and_never_empty():
    found = physical_cores(sorted(os.sched_getaffinity(0)))
    assert slots_here(1)[0] == found[0] and len(slots_here(1)) == len(found)
    assert slots_here(len(found) + 5) == [tuple(sorted(os.sched_getaffinity(0)))]  # fewer cores: one slot


def test_concurrent_evaluations_get_different_cores_and_a_released_core_is_reused():
    if len(slots_here(1)) < 2:
        pytest.skip("needs two cores")
    with claimed((), 1) as first:
        with claimed((), 1) as second:
            assert first and second and set(first).isdisjoint(second)
    with claimed((), 1) as again:
        assert again == first


def test_given_cores_are_waited_for_then_given_up_on_with_a_warning(capsys):
    core = slots_here(1)[0]
    with claimed(core, 1):
        began = time.monotonic()
        with claimed(core, 1, wait_s=0.3) as got:
            assert got == core  # still pinned where asked, just not exclusively
        assert time.monotonic() - began >= 0.3
    assert "no free cores for 0.3 s" in capsys.readouterr().err


def test_a_claim_is_machine_wide_and_dies_with_its_process(tmp_path):
    core = slots_here(1)[0]
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from evaluator.timing import cores
        cores.LOCK_DIR = Path({str(cores.LOCK_DIR)!r})
        with cores.claimed({core!r}, 1):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert cores._try_claim(core) is None  # another process holds it
    finally:
        holder.kill()
        holder.wait()
    held = cores._try_claim(core)  # the dead process's claim went with it
    assert held is not None
    for fd in held:
        os.close(fd)


def test_lock_files_are_private_to_the_evaluators_user_in_a_folder_only_it_writes():
    held = cores._try_claim(slots_here(1)[0])
    assert held
    for fd in held:
        os.close(fd)
    folder = os.lstat(cores.LOCK_DIR)
    assert stat.S_ISDIR(folder.st_mode) and folder.st_uid == os.geteuid() and not folder.st_mode & 0o022
    for lock in cores.LOCK_DIR.iterdir():
        found = os.lstat(lock)
        assert stat.S_ISREG(found.st_mode) and stat.S_IMODE(found.st_mode) == 0o600


@pytest.mark.parametrize("planted", ["world-writable", "symlink"])
def test_a_lock_folder_someone_else_could_write_to_is_refused(tmp_path, planted):
    if planted == "world-writable":
        cores.LOCK_DIR.mkdir(mode=0o777)
        cores.LOCK_DIR.chmod(0o1777)  # what the evaluator used to make
    else:
        (tmp_path / "elsewhere").mkdir()
        cores.LOCK_DIR.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="lock folder"):
        cores.try_lock("cpu0.lock")
    assert not (tmp_path / "elsewhere" / "cpu0.lock").exists()


@pytest.mark.skipif(not privileges.can_switch_user(), reason="a candidate has a uid of its own only under root")
def test_a_candidate_can_neither_hold_nor_plant_core_locks(tmp_path, monkeypatch):
    limits = in_sandbox("process")  # in bwrap the folder is not even in view
    folder = Path(f"/tmp/eplb-test-locks-{uuid.uuid4().hex}")  # where the real one is: reachable
    target = Path(f"/tmp/eplb-test-bait-{uuid.uuid4().hex}")
    monkeypatch.setattr(cores, "LOCK_DIR", folder)
    core = slots_here(1)[0]
    try:
        with claimed(core, 1):
            pass  # the lock files exist, as after any evaluation
        path = program("lock_cores", tmp_path, lock_dir=str(folder), bait_cpu="9999", target=str(target))
        with CandidateProcess(path, limits) as candidate:
            candidate.start()
            candidate.call(window(0), *ARGS)
            facts = printed(candidate.output(), "LOCKS")
            assert facts.pop("symlink") == "PermissionError"
            assert facts and set(facts.values()) == {"PermissionError"}
            held, bait = cores._try_claim(core), cores._try_claim((9999,))
            assert held is not None and bait is not None  # the candidate holds nothing...
            for fd in held + bait:
                os.close(fd)
        assert not target.exists()  # ...and planted nothing
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if target.exists():
            target.unlink()
