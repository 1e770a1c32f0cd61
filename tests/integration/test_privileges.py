"""The kernel mechanisms the sandbox's secrecy rests on, checked on this machine for real."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from paths import REPO

from evaluator.sandbox import privileges, uids

SECRET = "sk-secret-dumpable-4f1c9a"

# Both the target (the harness) and the reader (a candidate) hold no capabilities, as processes of
# an ordinary user do: the kernel also refuses a reader whose capabilities are fewer than the
# target's, which would make the control case below pass for the wrong reason under root.
TARGET = """
import sys
from evaluator.sandbox import privileges
privileges.capset(0)
privileges.set_dumpable(sys.argv[1] == "1")
print("ready", flush=True)
input()
"""


def _in_child(action: Callable[[], str]) -> str:
    """Run `action` in a forked child (so its privilege changes stay there); its result string."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            result = action()
        except Exception as exc:  # noqa: BLE001
            result = f"{type(exc).__name__}"
        os.write(write_fd, result.encode()[:4096])
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        result = f.read().decode()
    os.waitpid(pid, 0)
    return result


def _read_environ_without_capabilities(pid: int) -> str:
    """What a capability-less process of the same uid (a candidate, when the harness is not root)
    reads from /proc/<pid>/environ."""
    def action() -> str:
        privileges.capset(0)
        with open(f"/proc/{pid}/environ", "rb") as f:
            return "read:" + f.read().decode(errors="replace")
    return _in_child(action)


@pytest.mark.parametrize("dumpable", [True, False])
def test_non_dumpable_process_hides_its_environ_from_the_same_uid(dumpable):
    target = subprocess.Popen([sys.executable, "-c", TARGET, "1" if dumpable else "0"], cwd=REPO,
                              env={"PATH": os.defpath, "OPENAI_API_KEY": SECRET},
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().strip() == "ready"
        seen = _read_environ_without_capabilities(target.pid)
    finally:
        target.kill()
        target.wait()
    if dumpable:
        assert SECRET in seen, "control: a dumpable process's environ is readable by its uid"
    else:
        assert seen == "PermissionError" and SECRET not in seen


@pytest.mark.skipif(not privileges.can_switch_user(), reason="needs root with CAP_SETUID etc.")
def test_dropping_privileges_as_root_leaves_a_uid_that_cannot_write_signal_or_read_root_files(tmp_path):
    owned_by_root = tmp_path / "evaluator-file.py"
    owned_by_root.write_text("original")
    owned_by_root.chmod(0o644)
    parent = os.getpid()
    uid = uids.candidate_uids()[0]

    def action() -> str:
        privileges.drop_privileges(uid)
        results = [str(os.getuid()), str(privileges.effective_caps())]
        for attempt in (lambda: Path("/etc/shadow").read_text()[:1],
                        lambda: owned_by_root.write_text("tampered"),
                        lambda: os.kill(parent, 0),
                        lambda: os.setuid(0)):
            try:
                attempt()
                results.append("ok")
            except OSError as exc:
                results.append(type(exc).__name__)
        return " ".join(results)

    got_uid, caps, shadow, write, signal_parent, regain = _in_child(action).split()
    assert (int(got_uid), int(caps)) == (uid, 0)
    assert (shadow, write, signal_parent, regain) == ("PermissionError",) * 4
    assert owned_by_root.read_text() == "original"


@pytest.mark.skipif(not privileges.affinity_filter_supported(), reason="no seccomp filter for this machine")
def test_the_affinity_filter_refuses_every_thread_and_child_but_nothing_else():
    cpus = sorted(os.sched_getaffinity(0))

    def action() -> str:
        os.sched_setaffinity(0, cpus[:1])
        privileges.drop_privileges(None)
        privileges.forbid_affinity_changes()
        results = []
        for attempt in (lambda: os.sched_setaffinity(0, cpus),
                        lambda: subprocess.run(["taskset", "-p", "1", str(os.getpid())], check=True,
                                               capture_output=True),
                        lambda: os.sched_getaffinity(0)):
            try:
                attempt()
                results.append("ok")
            except (OSError, subprocess.CalledProcessError) as exc:
                results.append(type(exc).__name__)
        return " ".join(results)

    assert _in_child(action).split() == ["PermissionError", "CalledProcessError", "ok"]
