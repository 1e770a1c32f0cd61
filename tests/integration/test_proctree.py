"""Killing a subtree: orphans that double-forked and setsid'ed are found through the subreaper."""
from __future__ import annotations

import subprocess
import sys
import uuid

from paths import REPO
from sandbox_support import processes_named, wait_until_gone

SCRIPT = """
import os, sys, time
from evaluator.sandbox import privileges, proctree
marker, spared_marker = sys.argv[1], sys.argv[2]
privileges.set_child_subreaper()

def daemon(name):
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", [name, "1000"])
        os._exit(0)
    os.waitpid(first, 0)

daemon(marker)                      # an orphan, reparented to us
spared = os.fork()
if spared == 0:
    if os.fork() == 0:              # a grandchild whose parent stays alive
        os.execv("/bin/sleep", [marker, "1000"])
    os.execv("/bin/sleep", [spared_marker, "1000"])
time.sleep(0.3)
print("before", len(proctree.children(os.getpid())), flush=True)
print("first", proctree.kill_subtree(spare=[spared]), flush=True)
input()                             # the test checks what survived, then lets us go on
print("second", proctree.kill_subtree(), flush=True)
input()
"""


def test_kill_subtree_kills_orphans_and_spares_only_what_it_is_told():
    marker, spared_marker = f"eplb-orphan-{uuid.uuid4().hex}", f"eplb-spared-{uuid.uuid4().hex}"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, marker, spared_marker], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["before", "2"]
        assert proc.stdout.readline().split() == ["first", "True"]
        assert processes_named(spared_marker), "the spared child was killed"
        assert len(processes_named(marker)) == 1, "only the spared child's own child may live"
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["second", "True"]
        assert wait_until_gone(marker, 2) == [] and wait_until_gone(spared_marker, 2) == []
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
