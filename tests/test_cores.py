"""evaluator.cores: physical cores from sysfs, and where an evaluation without a slot is pinned."""
from __future__ import annotations

import os

from evaluator.cores import default_cpus, physical_cores


def test_this_machines_cores_are_read_from_sysfs():
    cores = physical_cores(os.sched_getaffinity(0))
    assert sorted(cpu for core in cores for cpu in core) == sorted(os.sched_getaffinity(0))
    assert physical_cores([10_000]) == [(10_000,)]  # a CPU sysfs knows nothing of is a core of its own


def test_default_cpus_are_the_first_whole_cores_this_process_may_use():
    cores = physical_cores(sorted(os.sched_getaffinity(0)))
    assert default_cpus(1) == cores[0]
    assert set(default_cpus(len(cores) + 5)) == os.sched_getaffinity(0)  # more threads than cores: all


def test_default_cpus_follow_this_processs_affinity():
    allowed = os.sched_getaffinity(0)
    last = max(allowed)
    os.sched_setaffinity(0, {last})
    try:
        assert default_cpus(1) == (last,)
    finally:
        os.sched_setaffinity(0, allowed)
