"""sandbox="bwrap": what the stronger sandbox adds over "process" -- no view of the evaluator's files,
no network, no other processes, nowhere shared to write -- with the same behaviour otherwise."""
from __future__ import annotations

import json
import socket
import uuid

import pytest
from sandbox_support import ARGS, failure, program, wait_until_gone, wait_until_present, window

from evaluator.errors import UserError
from evaluator.sandbox import isolation, privileges, uids
from evaluator.sandbox.candidate_process import CandidateProcess, Limits

try:
    isolation.bwrap_executable()
except UserError as unavailable:
    pytest.skip(f"bwrap unavailable: {unavailable}", allow_module_level=True)

BWRAP = Limits(sandbox="bwrap", call_timeout_s=5.0, load_timeout_s=10.0, memory_mb=512)


def test_the_child_sees_a_read_only_world_without_network_or_other_processes(tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text("the future window")
    listener = socket.create_server(("127.0.0.1", 0))
    marker = uuid.uuid4().hex
    path = program("probe", tmp_path, read_target=str(trace), write_target=str(tmp_path / "w"),
                   port=str(listener.getsockname()[1]), marker=marker)
    with CandidateProcess(path, BWRAP) as candidate:
        candidate.start()
        assert candidate.sandbox == "bwrap"
        candidate.call(window(0), *ARGS)
        facts = json.loads(candidate.output().split("PROBE=", 1)[1].splitlines()[0])
    listener.close()
    assert facts["read_target"] == "FileNotFoundError"  # the evaluator's files are not there
    assert facts["write_target"] == "FileNotFoundError" and not (tmp_path / "w").exists()
    assert facts["connect"] != "ok"  # its own network namespace: the host's port is unreachable
    assert facts["processes"] <= 5  # bwrap's init, the fork server, the keeper, the child
    assert facts["write_home"] == "ok"
    if privileges.can_switch_user():  # with its own uid it can write nowhere a later candidate could read
        assert facts["write_tmp"] == facts["write_shm"] == "PermissionError"
        assert facts["uid"] in uids.candidate_uids() and facts["caps"] == 0


def test_failures_and_daemons_are_handled_as_in_the_process_sandbox(tmp_path):
    exc, _ = failure(program("segfault", tmp_path), BWRAP)
    assert exc.reason == "killed by SIGSEGV during call 1"
    marker = f"eplb-daemon-{uuid.uuid4().hex}"
    with CandidateProcess(program("double_fork", tmp_path, marker=marker), BWRAP) as candidate:
        candidate.start()
        candidate.call(window(0), *ARGS)
        assert wait_until_present(marker), "control: the daemon is running before close()"
    assert wait_until_gone(marker, 0) == []


def test_timing_tampering_is_caught_in_bwrap_too(tmp_path):
    exc, _ = failure(program("wire_patch", tmp_path), BWRAP)
    assert exc.reason.startswith("timing tampering: child reported 0.001 ms")


def test_a_checkout_or_venv_under_tmp_is_bound_over_the_private_tmp():
    # bwrap mounts in argument order: a tree bound before the tmpfs on /tmp would be hidden by it
    # (seen: a clone in /tmp/ci-clone gave "bwrap: execvp /tmp/ci-clone/.venv/bin/python: No such file").
    args = isolation.bwrap_command(["/tmp/some-checkout"])
    tmpfs = args.index("--tmpfs")
    bound = [i for i, a in enumerate(args[:-1]) if a == "--ro-bind" and args[i + 1] == "/tmp/some-checkout"]
    assert args[tmpfs + 1] == isolation.SANDBOX_TMP and bound and bound[0] > tmpfs
