"""The kernel mechanisms the sandbox's secrecy rests on, checked on this machine for real."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from evaluator.sandbox import privileges
from paths import REPO

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
def test_dropping_privileges_as_root_leaves_a_nobody_that_cannot_write_or_signal(
        tmp_path):
    owned_by_root = tmp_path / "evaluator-file.py"
    owned_by_root.write_text("original")
    owned_by_root.chmod(0o644)
    stdlib_file = Path(os.__file__)
    parent = os.getpid()

    def action() -> str:
        privileges.drop_privileges(switch_user=True, keep_read_all=True)
        results = [str(os.getuid()), str(privileges.effective_caps())]
        for attempt in (lambda: stdlib_file.read_text()[:1],
                        lambda: owned_by_root.write_text("tampered"),
                        lambda: os.kill(parent, 0),
                        lambda: os.setuid(0)):
            try:
                attempt()
                results.append("ok")
            except OSError as exc:
                results.append(type(exc).__name__)
        return " ".join(results)

    uid, caps, read, write, signal_parent, regain = _in_child(action).split()
    assert int(uid) == privileges.NOBODY
    assert int(caps) == 1 << privileges.CAP_DAC_READ_SEARCH
    assert read == "ok"  # it can still import from a root-only Python installation
    assert (write, signal_parent, regain) == ("PermissionError",) * 3
    assert owned_by_root.read_text() == "original"
