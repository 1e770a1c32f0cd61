"""The fork server: imports torch once, then forks a fresh keeper + child per candidate.

Why: a new Python that imports torch costs 1-2 s; forking one that already has costs milliseconds.
The evaluator starts one server per sandbox mode (servers.py) with a clean, allow-listed
environment, so that every child's inherited environment block -- what /proc/<pid>/environ shows for
the child, its keeper and the server -- holds no secret. The server never initialises CUDA (forking
after that is unsafe) and runs single-threaded (BLAS pools are pinned to one thread by the
environment), so fork() is safe here.

Protocol, on the SOCK_SEQPACKET control socket whose other end the evaluator holds (wire.py):
- on start the server sends {"op": "hello", "pid", "threads", "switch_user", "unreadable"}:
  `switch_user` when it runs as root and can give each candidate a uid of its own (uids.py);
  `unreadable`, the first file of the Python installation such a uid cannot read, if any (the
  evaluator then refuses this sandbox: a candidate never keeps a capability to read it);
- {"op": "spawn", "spec": ChildSpec} + 3 fds (data socket, output pipe, lifeline) ->
  {"ok": true, "keeper": pid}; the keeper takes over (keeper.py). The spec names the candidate's
  uid exactly when `switch_user`;
- {"op": "sweep"} -> {"ok": true}: kill whatever was reparented to the server (see below);
- EOF (the evaluator exited or died): kill everything below, remove the temp dir, exit.

The server is itself a child subreaper. A candidate can kill its keeper only if it runs under the
keeper's uid (the server is not root); its processes are then reparented here, and the server,
noticing the keeper's exit, kills every child that is not a live keeper ("sweep").
"""
from __future__ import annotations

import importlib
import json
import os
import select
import shutil
import socket
import sys
import tempfile
from typing import Any

from evaluator.sandbox import keeper, privileges, proctree, uids, wire

POLL_MS = 200
PRELOADED = ("bisect", "collections", "dataclasses", "functools", "heapq", "itertools",
             "math", "random", "statistics", "typing", "numpy")


def main(control_fd: int) -> None:
    privileges.set_dumpable(False)
    privileges.set_child_subreaper()
    _preload()
    _Server(socket.socket(fileno=control_fd)).serve()


class _Server:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.base = tempfile.mkdtemp(prefix="eplb-sandbox-")
        os.chmod(self.base, 0o711)  # a candidate must reach its own directory, not list others
        self.switch_user = privileges.can_switch_user()
        self.keepers: set[int] = set()

    def serve(self) -> None:
        wire.send_control(self.control, {"op": "hello", "pid": os.getpid(),
                                         "threads": len(os.listdir("/proc/self/task")),
                                         "switch_user": self.switch_user,
                                         "unreadable": _unreadable() if self.switch_user else None})
        poller = select.poll()
        poller.register(self.control.fileno(), select.POLLIN)
        try:
            while True:
                if poller.poll(POLL_MS):
                    try:
                        request, fds = wire.recv_control(self.control, max_fds=3)
                    except wire.PeerClosed:
                        return
                    wire.send_control(self.control, self.handle(request, fds))
                if self.reap():
                    proctree.kill_subtree(spare=self.keepers, reap=self.reap)
        finally:
            proctree.kill_subtree(reap=self.reap)
            shutil.rmtree(self.base, ignore_errors=True)

    def handle(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        try:
            if request.get("op") == "spawn" and len(fds) == 3:
                spec = keeper.ChildSpec.from_dict(request["spec"])
                if (spec.uid is not None) != self.switch_user:
                    return {"ok": False, "error": f"a spawn with uid {spec.uid} where switch_user is "
                                                  f"{self.switch_user}"}
                pid = os.fork()
                if pid == 0:
                    self.control.close()
                    keeper.run_keeper(spec, self.base, *fds)
                self.keepers.add(pid)
                return {"ok": True, "keeper": pid}
            if request.get("op") == "sweep":
                self.reap()
                proctree.kill_subtree(spare=self.keepers, reap=self.reap)
                return {"ok": True}
            return {"ok": False, "error": f"bad request {str(request)[:200]}"}
        except Exception as exc:  # noqa: BLE001 -- a bad request must not take the server down
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)

    def reap(self) -> bool:
        """Collect exited children; True if a keeper was among them."""
        dead = {pid for pid, _ in proctree.reap_children()}
        lost = bool(dead & self.keepers)
        self.keepers.difference_update(dead)
        return lost


def _unreadable() -> str | None:
    """The first file or folder of the Python installation (the standard library, torch, numpy)
    that a candidate uid cannot read, found by trying in a throwaway child; None if all can be."""
    paths = [path for module in ("os", "torch", "numpy") if (loaded := sys.modules.get(module))
             for path in (os.path.dirname(str(loaded.__file__)), str(loaded.__file__))]
    uid = uids.candidate_uids()[0]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        failed = "anything (the check broke)"
        try:
            privileges.drop_privileges(uid)
            failed = next((path for path in paths if not _readable(path)), "")
        except OSError as exc:
            failed = f"anything (switching to uid {uid} failed: {exc})"
        finally:
            os.write(write_end, failed.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        failed = answer.read().decode()
    os.waitpid(pid, 0)
    return failed or None


def _readable(path: str) -> bool:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        return True
    except OSError:
        return False


def _preload() -> None:
    """Import modules candidates commonly use, so no child pays for them (torch is in already)."""
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def boot_args(paths: list[str], control_fd: int) -> list[str]:
    """Interpreter arguments that start a server: put `paths` first on sys.path, call main()."""
    line = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
            "from evaluator.sandbox.forkserver import main; main(int(sys.argv[2]))")
    return ["-c", line, json.dumps(paths), str(control_fd)]
