"""The evaluator's side of the fork servers: start one per sandbox mode, spawn through it, stop it.

One server per mode and per evaluator process, started on first use (1-4 s: it imports torch) and
reused by every candidate after that, from any thread. If a server has died (a candidate found a
way to kill it), the next spawn starts a new one. At exit the servers are told to stop; if
the evaluator dies without running atexit handlers, each server sees EOF on its control socket and
stops anyway, killing everything below it.

A server that runs as root but whose candidates' uid cannot read the Python installation (its
hello names the file) is refused with a one-line UserError saying how to fix it: the child never
keeps a capability to read it, and "auto" only falls back to "process" where bwrap is missing.

Starting the first server also marks the evaluator process non-dumpable (privileges.set_dumpable):
the kernel then hides its /proc/<pid>/environ (where the API keys are) from processes of the same
uid, which candidates are when the harness does not run as root. Side effect: a debugger or py-spy
needs root to attach to the evaluator.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from evaluator.errors import UserError
from evaluator.sandbox import forkserver, isolation, privileges, wire

START_TIMEOUT_S = 120.0
REPLY_TIMEOUT_S = 30.0


class ForkServer:
    """A running fork server (see forkserver.py for its protocol)."""

    def __init__(self, sandbox: str) -> None:
        self.sandbox = sandbox
        self.hello: dict[str, Any] = {}
        self._lock = threading.Lock()
        privileges.set_dumpable(False)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        roots = isolation.import_roots()
        argv = [sys.executable, "-I", *forkserver.boot_args(roots, theirs.fileno())]
        if sandbox == "bwrap":
            argv = isolation.bwrap_command(roots) + argv
        self._control = ours
        with theirs:
            self._process = subprocess.Popen(
                argv, env=isolation.server_environment(sandbox), pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
                cwd="/")
        try:
            self.hello, _ = wire.recv_control(ours, timeout=START_TIMEOUT_S)
        except (OSError, wire.WireError) as exc:
            self.stop()
            raise UserError(f"the {sandbox} sandbox's fork server did not start "
                            f"({type(exc).__name__}: {exc}); its stderr above says why") from None
        if self.hello.get("unreadable"):
            self.stop()
            raise UserError(_unreadable_message(sandbox, str(self.hello["unreadable"])))

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    @property
    def pid(self) -> int:
        """The server process (in bwrap: bwrap itself, the server's ancestor)."""
        return self._process.pid

    def request(self, message: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        """One request/reply exchange; OSError or wire.WireError if the server is gone."""
        with self._lock:
            wire.send_control(self._control, message, fds or [])
            reply, _ = wire.recv_control(self._control, timeout=REPLY_TIMEOUT_S)
        if not reply.get("ok"):
            raise wire.WireError(f"fork server refused {message.get('op')}: {reply.get('error')}")
        return reply

    def stop(self) -> None:
        """Close the control socket (the server then kills everything below it) and wait."""
        self._control.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _unreadable_message(sandbox: str, path: str) -> str:
    fix = ("use --sandbox bwrap (or auto, with bubblewrap installed), or install Python where every user "
           "can read it" if sandbox == "process" else "make the Python installation readable by every "
           "user (chmod -R o+rX on it)")
    return (f"sandbox '{sandbox}' cannot run here: candidates run under uids of their own, with no "
            f"capability, and cannot read {path}; {fix}")


_servers: dict[str, ForkServer] = {}
_registry_lock = threading.Lock()


def server_for(sandbox: str) -> ForkServer:
    """The live server for `sandbox`, started (or restarted) if needed."""
    with _registry_lock:
        server = _servers.get(sandbox)
        if server is None or not server.alive:
            if server is not None:
                server.stop()
            server = _servers[sandbox] = ForkServer(sandbox)
        return server


def spawn(sandbox: str, spec: dict[str, Any], fds: list[int]) -> ForkServer:
    """Ask the `sandbox` server to start a keeper + child on `fds`; retry once on a fresh server."""
    server = server_for(sandbox)
    try:
        server.request({"op": "spawn", "spec": spec}, fds)
        return server
    except (OSError, wire.WireError):
        with _registry_lock:
            if _servers.get(sandbox) is server:
                del _servers[sandbox]
        server.stop()
    server = server_for(sandbox)
    server.request({"op": "spawn", "spec": spec}, fds)  # a second failure propagates
    return server


def _forget_in_forked_child() -> None:
    """A process forked from the evaluator (a multiprocessing worker, say) must not share the
    parent's control sockets or locks: it starts servers of its own when it needs them."""
    global _registry_lock
    _servers.clear()
    _registry_lock = threading.Lock()


def stop_all() -> None:
    """Stop every server (registered with atexit; safe to call more than once).

    A second Ctrl-C while the harness exits must not cut this short (it would print a traceback
    and could leave a server behind), so SIGINT is ignored for the moment it takes.
    """
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        with _registry_lock:
            servers = list(_servers.values())
            _servers.clear()
        for server in servers:
            server.stop()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


atexit.register(stop_all)
os.register_at_fork(after_in_child=_forget_in_forked_child)
