"""The keeper: one trusted process per candidate that owns the candidate's child and all it spawns.

The fork server forks a keeper per candidate; the keeper starts a session, becomes a child subreaper,
creates the candidate's private HOME/TMPDIR, forks the child and then only watches:
- the *lifeline*, a socket whose other end only the evaluator holds: a "kill" request, or EOF because
  the evaluator closed it or died (even by SIGKILL), ends the candidate;
- its children, on every SIGCHLD: the child exiting (crash, signal, os._exit) ends the candidate,
  and any other process of the candidate that has exited (an orphan, reparented here) is reaped at
  once, so no zombie holds a pid or a slot of the candidate's process limit until the end;
- memory the cap must count but RLIMIT_AS cannot see: on CUDA the child's resident growth (a CUDA
  process maps a huge address space), and with a uid of its own the RAM its files on tmpfs and
  its shared memory hold (scratch.py) -- their sum against the cap, every RSS_POLL_S.
On the lifeline the evaluator may also ask for the *yardstick* (evaluator.timing.yardstick), the reference
workload that normalises runtimes: the keeper runs it on the candidate's cores (it pins itself to
them before forking the child) with every candidate process stopped (SIGSTOP), so nothing the
candidate leaves running between calls can slow it down, and answers with its time.
Then it kills every process left below it (proctree.kill_subtree), removes the private directory
and, with a uid of its own, everything else that uid left (scratch.sweep), reports how the child
ended on the lifeline, and exits. No candidate code ever runs in the keeper.

Before the child runs any candidate code it sets itself up here (`_prepare_child`): standard streams
to the capture pipe, no other file descriptors, the allow-listed environment, rlimits (core dumps,
file size, address space, and RLIMIT_NPROC: at most `max_processes` processes and threads of its
uid at once -- counting the user's own when it shares the user's uid), its cores, thread count,
device, the evaluator's own packages made unimportable (child.seal_imports), privileges dropped
(privileges.drop_privileges) and finally the seccomp filter that keeps it on its cores.
"""
from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

import torch

from evaluator.sandbox import child, privileges, proctree, scratch, wire
from evaluator.timing import yardstick

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
FILE_SIZE_LIMIT = 1 << 30  # bytes per file the candidate writes (its private dir may be RAM-backed)
RSS_POLL_S = 0.05
_BASELINE = struct.Struct("!Q")


@dataclass(frozen=True)
class ChildSpec:
    """What the evaluator asks for one candidate (sent as the spawn request's JSON)."""

    device: str
    threads: int
    memory_mb: int
    env: dict[str, str]  # allow-listed variables; HOME, TMPDIR and thread settings are added here
    cpus: tuple[int, ...] = ()  # cores the child is pinned to; (): those of the server
    uid: int | None = None  # the candidate's own uid (uids.py); None: it keeps the server's
    max_processes: int = 256  # processes and threads of its uid at once (RLIMIT_NPROC)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ChildSpec:
        uid = data.get("uid")
        return ChildSpec(device=str(data["device"]), threads=int(data["threads"]),
                         memory_mb=int(data["memory_mb"]),
                         env={str(k): str(v) for k, v in dict(data["env"]).items()},
                         cpus=tuple(int(c) for c in data.get("cpus", ())),
                         uid=None if uid is None else int(uid),
                         max_processes=int(data.get("max_processes", 256)))


def run_keeper(spec: ChildSpec, base_dir: str, data_fd: int, out_fd: int, lifeline_fd: int) -> NoReturn:
    """Body of the keeper process (just forked from the fork server). Never returns."""
    code = 1
    try:
        os.setsid()
        privileges.set_child_subreaper()
        lifeline = socket.socket(fileno=lifeline_fd)
        home = tempfile.mkdtemp(prefix="cand-", dir=base_dir)
        if spec.uid is not None:
            os.chown(home, spec.uid, spec.uid)
        baseline_r, baseline_w = os.pipe()
        if spec.cpus:  # the yardstick must run where the candidate does
            os.sched_setaffinity(0, spec.cpus)
        pid = os.fork()
        if pid == 0:
            lifeline.close()
            os.close(baseline_r)
            _child_main(spec, home, data_fd, out_fd, baseline_w)
        for fd in (data_fd, out_fd, baseline_w):
            os.close(fd)
        outcome = _watch(spec, pid, lifeline, baseline_r, home)
        proctree.kill_subtree()
        shutil.rmtree(home, onerror=_force_remove)
        if spec.uid is not None:
            scratch.sweep(spec.uid)
        try:
            wire.send_control(lifeline, outcome)
        except OSError:
            pass  # the evaluator has gone; nothing to report to
        code = 0
    except BaseException:  # noqa: BLE001 -- our bug, not the candidate's: show it, then exit
        traceback.print_exc()
    finally:
        os._exit(code)


def _watch(spec: ChildSpec, pid: int, lifeline: socket.socket, baseline_r: int,
           home: str) -> dict[str, Any]:
    """Wait until the child ends or the evaluator asks to end it, reaping the candidate's other
    processes as they exit; say how it ended."""
    woken = _wake_on_sigchld()
    poller = select.poll()
    for fd in (woken, lifeline.fileno(), baseline_r):
        poller.register(fd, select.POLLIN)
    memory = _Memory(spec, pid, home)
    while True:
        ready = {fd for fd, _ in poller.poll(int(RSS_POLL_S * 1000) if memory.watched else None)}
        if woken in ready:
            _drain(woken)
        for reaped, status in proctree.reap_children():  # also catches a SIGCHLD sent before
            if reaped == pid:                          # the handler was in place
                return _describe(status)
        if lifeline.fileno() in ready:
            if _request(lifeline) != "yardstick":
                return {"status": "killed"}  # a kill request or EOF: either way, end it
            wire.send_control(lifeline, {"op": "yardstick", "ns": _yardstick_ns()})
        if baseline_r in ready:  # the child's footprint once set up (CUDA context included)
            raw = os.read(baseline_r, _BASELINE.size)
            poller.unregister(baseline_r)
            if len(raw) == _BASELINE.size:
                memory.baseline = _BASELINE.unpack(raw)[0]
        if memory.exceeded():
            return {"status": "memory", "limit_mb": spec.memory_mb}


def _wake_on_sigchld() -> int:
    """A descriptor that becomes readable whenever a child of this process changes state."""
    woken, wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the signal is delivered
    return woken


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass  # empty


class _Memory:
    """The memory the cap counts beyond RLIMIT_AS (see the module docstring)."""

    def __init__(self, spec: ChildSpec, pid: int, home: str) -> None:
        self.pid, self.uid = pid, spec.uid
        self.cuda = spec.device.startswith("cuda")
        self.limit = spec.memory_mb * 2**20
        self.baseline: int | None = None  # the child's resident size once set up
        self.tmpfs = scratch.tmpfs_only((home, *scratch.SCRATCH_ROOTS)) if self.uid is not None else ()
        self.watched = self.cuda or self.uid is not None

    def exceeded(self) -> bool:
        if not self.watched or self.baseline is None:
            return False
        used = proctree.rss_bytes(self.pid) - self.baseline
        if self.uid is not None:
            used += scratch.memory_bytes(self.uid, self.tmpfs)
        return used > self.limit


def _request(lifeline: socket.socket) -> str | None:
    """The op the evaluator sent on the lifeline; None for EOF or anything unreadable."""
    try:
        message, _ = wire.recv_control(lifeline)
    except (OSError, wire.WireError):
        return None
    return message.get("op") if isinstance(message.get("op"), str) else None


def _yardstick_ns() -> int:
    """One timed yardstick run, on one thread, with the candidate's processes stopped."""
    stopped = proctree.stop_subtree()
    try:
        torch.set_num_threads(1)
        return yardstick.run_ns()
    finally:
        proctree.resume(stopped)


def _describe(status: int) -> dict[str, Any]:
    if os.WIFSIGNALED(status):
        return {"status": "signal", "signal": os.WTERMSIG(status)}
    return {"status": "exit", "code": os.waitstatus_to_exitcode(status)}


def _child_main(spec: ChildSpec, home: str, data_fd: int, out_fd: int, baseline_w: int) -> NoReturn:
    try:
        _prepare_child(spec, home, data_fd, out_fd, baseline_w)
        child.serve(socket.socket(fileno=data_fd), spec.device)
    except BaseException:  # noqa: BLE001 -- set-up failed, or the request loop broke: say why
        sys.excepthook(*sys.exc_info())
    finally:
        os._exit(70)


def _prepare_child(spec: ChildSpec, home: str, data_fd: int, out_fd: int, baseline_w: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    _close_fds_except({0, 1, 2, data_fd, baseline_w})
    os.environ.clear()
    os.environ.update(spec.env)
    os.environ.update({name: str(spec.threads) for name in THREAD_VARIABLES})
    os.environ.update(HOME=home, TMPDIR=home)
    tempfile.tempdir = None  # recomputed from TMPDIR on next use
    os.chdir(home)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))
    if spec.cpus:  # before torch starts a thread pool: every thread it starts inherits the set
        os.sched_setaffinity(0, spec.cpus)
    torch.set_num_threads(spec.threads)
    try:
        torch.set_num_interop_threads(spec.threads)
    except RuntimeError:
        pass  # already fixed in this process; torch allows it once
    if spec.device.startswith("cuda"):
        torch.zeros(1, device=spec.device)  # create the CUDA context before measuring the baseline
    else:
        cap = _address_space() + spec.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    os.write(baseline_w, _BASELINE.pack(proctree.rss_bytes(os.getpid())))
    os.close(baseline_w)
    # A uid of its own has no other process; a shared one (the user's) has the user's too.
    existing = 0 if spec.uid is not None else proctree.tasks_of_user(os.getuid())
    processes = existing + spec.max_processes
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    child.seal_imports()
    privileges.drop_privileges(spec.uid)
    if privileges.affinity_filter_supported():
        privileges.forbid_affinity_changes()


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _close_fds_except(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory's own fd, already closed by listdir


def _force_remove(_function: Any, path: str, _exc: Any) -> None:
    """rmtree fallback: a candidate may chmod its files to 000; make the parent writable, retry."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass
