"""evaluator.timing.cores: physical cores from sysfs, and cores claimed machine-wide while an evaluation runs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from evaluator.timing import cores
from evaluator.timing.cores import claimed, physical_cores, slots_here
from paths import REPO



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
