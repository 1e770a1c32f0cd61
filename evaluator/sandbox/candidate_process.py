"""Running one candidate program in an isolated child process: start, call, time, kill.

    with CandidateProcess(path, Limits(), device="cpu") as candidate:
        candidate.start()                       # CandidateFailure if it cannot even load
        result = candidate.call(window, R, groups, nodes, gpus, previous=None)  # or CandidateFailure
    # leaving the block kills the child and everything it started

How a candidate is held (modules in brackets):
- It runs in a child forked from a fork server that imported torch once [forkserver], under a keeper
  process that is a child subreaper, so every process the candidate starts -- double-forked and
  setsid'ed or not -- can be found and killed, and is reaped as soon as it exits [keeper,
  proctree]. Ending the candidate (close(), a timeout, the evaluator exiting or even being
  SIGKILLed) kills all of them and removes its private HOME/TMPDIR.
- The child's environment is an allow-list (PATH, CUDA_VISIBLE_DEVICES, LD_LIBRARY_PATH, locale,
  thread settings, a private HOME/TMPDIR) and so is the server's, whose environ block the child
  inherits [isolation]. The evaluator makes itself non-dumpable so that same-uid processes cannot
  read its /proc/<pid>/environ [servers, privileges]. The evaluator's and harness's own packages
  are not importable in the child [child.seal_imports].
- When the evaluator runs as root, each running candidate gets a uid of its own [uids], held
  machine-wide until its processes are dead and its files removed: it can neither write the
  evaluator's files nor signal its processes or another candidate's, nor read root-only files --
  the child never keeps a capability [privileges]. If that uid cannot read the Python
  installation (one under a root-only directory such as /root/.pyenv), the sandbox is refused
  with a one-line fix [servers].
- Limits: a deadline for the whole evaluation, one per call and one for loading; memory (RLIMIT_AS
  on CPU; on CUDA, which maps a huge address space, the keeper polls the child's RSS instead; with
  a uid of its own, what its files on tmpfs and its shared memory hold counts too, and is removed
  when it ends [scratch]); at most `max_processes` processes and threads (RLIMIT_NPROC); a fixed
  torch/BLAS thread count; at most `output_cap_bytes` of stdout+stderr kept (head and tail).
  Placement: the child pins itself to `cpus` before it starts any thread, a seccomp filter keeps
  it there [privileges], and it sees only the `gpu` it is given (see
  harness.execution.local_slots for the slots that keep concurrent timed runs apart).
- Data crosses as JSON headers and raw tensor bytes, never pickles, with sizes bounded [wire]; the
  child gets its own copy of each window, one call at a time. Text from the child (an exception's
  type and message, the traceback, what it printed) is escaped before it goes further, so it
  cannot drive a terminal [text]; formatting an exception gets FORMAT_TIMEOUT_S.
- Timing: the window travels in the timed request itself, so nothing the program does with it
  falls outside the evaluator's clock. The child reports the time of the call alone (input moved
  to the device beforehand, outputs copied to the CPU inside the span); the evaluator measures the
  round trip with its own clock. A claim longer than the round trip, or more than
  `timing_slack_s + timing_slack_ratio * round trip` below it, fails the candidate ("timing
  tampering"). A claim that passes is still raised, if need be, to the round trip minus the IPC
  overhead (measured with pings *before* the program is loaded, while the child is still
  trustworthy), the transfer time of the inputs and outputs and 1 ms. So a program that patches
  the clock, the child or the wire format gains at most about a millisecond, while an honest call
  delayed by scheduling noise is not rejected (its figure just absorbs the noise).
  Between calls, `yardstick_ms()` has the keeper time the reference workload that normalises
  runtimes (evaluator.timing.yardstick) on the candidate's cores, with every candidate process stopped.
- The previous placement: a program whose rebalance_experts takes `old_global_expert_indices`
  (vLLM's name) or **kwargs gets `previous` there (None when the caller has none); any other is
  called with the five arguments alone.

Sandboxes (`Limits.sandbox`; the `sandbox` property says which one is in force):
- "auto" (the default): "bwrap" where bubblewrap works here, else "process" (said on stderr).
- "process": the above. What it cannot stop: reading any file its uid can read (the evaluator's
  sources among them, by path), network access; and, when the evaluator is not root (so the child
  shares the user's uid): signalling the user's processes, writing the user's files, leaving
  files in /tmp and /dev/shm, holding the user's core locks, and reading the environment of the
  user's *other* processes -- e.g. the shell that started the harness, if it exported API keys.
- "bwrap": the fork server runs inside bubblewrap: a read-only view of only the Python installation,
  the virtual environment and the part of the `evaluator` package the server runs; no network; a
  PID namespace; a tmpfs /tmp (as root the child, with its own uid, can write only its private
  directory) [isolation]. If bwrap is missing or cannot create namespaces here, asking for it
  raises UserError -- it never falls back to "process".
"""
from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from evaluator.errors import UserError
from evaluator.sandbox import isolation, servers, uids, wire
from evaluator.sandbox.capture import OutputCapture
from evaluator.sandbox.text import printable

TRANSFER_FLOOR_BYTES_PER_S = 500e6  # the slowest local socket copy we allow for (measured ~3 GB/s)
CLAMP_MARGIN_S = 0.001  # for the IPC overhead of a call varying from that of the pings
PINGS = 5
DETAIL_CHARS = 8000
CLOSE_TIMEOUT_S = 10.0
YARDSTICK_TIMEOUT_S = 10.0  # a few ms of work; more means the keeper is stuck
FORMAT_TIMEOUT_S = 2.0  # for the child to format an exception it reported (its __str__ may hang)


@dataclass(frozen=True)
class Limits:
    """What one candidate evaluation may use (see the module docstring for how each is enforced)."""

    deadline_s: float = 600.0  # the whole evaluation: every call of one candidate
    call_timeout_s: float = 60.0  # one rebalance_experts call
    load_timeout_s: float = 30.0  # starting the child and importing the program
    memory_mb: int = 4096  # beyond the child's start-up footprint
    threads: int = 1  # torch's thread pools and OMP/MKL settings in the child (numpy's own BLAS
    #                   pool stays at 1: it is made when the fork server imports numpy)
    output_cap_bytes: int = 65536  # stdout+stderr kept, half from the start, half from the end
    sandbox: str = "auto"  # "auto" (bwrap where it works, else process), "process" or "bwrap"
    max_processes: int = 256  # processes and threads the candidate may have at once
    # Where the candidate runs (set per worker slot by the harness, so that concurrent timed runs
    # never share a core or a GPU): the cores it is pinned to, () for no pinning; and its
    # CUDA_VISIBLE_DEVICES, None to pass on the evaluator's own.
    cpus: tuple[int, ...] = ()
    gpu: str | None = None
    # How far a runtime claim may fall below the round trip before it counts as tampering: wide,
    # so scheduling noise on a busy machine never fails an honest call; a smaller lie is accepted
    # but gains nothing, since the runtime kept is bounded below by the evaluator's own clock.
    timing_slack_s: float = 0.05
    timing_slack_ratio: float = 0.25  # ...plus this share of the round trip

    def __post_init__(self) -> None:
        if self.sandbox not in isolation.SANDBOXES:
            raise UserError(f"unknown sandbox {self.sandbox!r}; choose one of {isolation.SANDBOXES}")
        for name in ("deadline_s", "call_timeout_s", "load_timeout_s", "memory_mb", "threads",
                     "output_cap_bytes", "max_processes"):
            if not getattr(self, name) > 0:
                raise UserError(f"limit {name} must be positive, got {getattr(self, name)!r}")
        if any(type(cpu) is not int or cpu < 0 for cpu in self.cpus):
            raise UserError(f"limit cpus must be core numbers, got {self.cpus!r}")
        if self.timing_slack_s < 0 or not 0 <= self.timing_slack_ratio < 1:
            raise UserError("timing_slack_s must be >= 0 and timing_slack_ratio in [0, 1)")


class CandidateFailure(Exception):
    """The candidate failed; `reason` is one line, `detail` the traceback and output tails, both
    with control characters escaped (text.printable): they may quote the candidate."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = printable(reason, one_line=True)
        self.detail = printable(detail, one_line=False)
        super().__init__(self.reason)


@dataclass(frozen=True)
class CallResult:
    """One call's outputs as returned (plain CPU tensors, not yet validated) and its runtime."""

    phy2log: torch.Tensor
    log2phy: torch.Tensor
    logcnt: torch.Tensor
    runtime_s: float  # the trustworthy figure: the child's claim, checked and bounded below
    round_trip_s: float  # the evaluator's own clock over the same call, IPC included
    reported_s: float  # what the child claimed


class CandidateProcess:
    """One candidate's child process. Not thread-safe: one evaluation drives it."""

    def __init__(self, program_path: Path, limits: Limits = Limits(), device: str = "cpu") -> None:
        self._path = Path(program_path)
        self._limits = limits
        self._device = device
        self._sandbox = isolation.resolve_sandbox(limits.sandbox)
        self._state = "new"
        self._calls = 0
        self._deadline = 0.0
        self._ipc_s = 0.0  # median no-op round trip, measured before the program is loaded
        self._takes_previous = False  # the program's signature has room for the previous placement
        self._data: socket.socket | None = None
        self._lifeline: socket.socket | None = None
        self._capture: OutputCapture | None = None
        self._server: servers.ForkServer | None = None
        self._uid_lock: int | None = None  # holds the candidate's own uid (uids.py), if it has one
        self._ending: dict[str, Any] | None = None  # the keeper's report of how the child ended

    @property
    def sandbox(self) -> str:
        """The sandbox in force: "process" or "bwrap" ("auto" resolved; never a silent fallback)."""
        return self._sandbox

    def __enter__(self) -> CandidateProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the child and load the program; CandidateFailure on any problem with either."""
        if self._state != "new":
            raise RuntimeError("start() called twice")
        try:
            source = self._path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self._state = "closed"
            raise CandidateFailure(f"cannot read the program: {exc}") from None
        data, data_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        life, life_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe()
        try:
            self._server = servers.spawn(self.sandbox, self._spec(),
                                         [data_theirs.fileno(), out_w, life_theirs.fileno()])
        except BaseException:
            for end in (data, life, data_theirs, life_theirs):
                end.close()
            os.close(out_r)
            self._release_uid()
            raise
        finally:
            os.close(out_w)
        data_theirs.close()
        life_theirs.close()
        self._data, self._lifeline, self._state = data, life, "running"
        self._deadline = time.monotonic() + self._limits.deadline_s  # a server's start not counted
        self._capture = OutputCapture(out_r, self._limits.output_cap_bytes)
        budget = self._limits.load_timeout_s
        self._exchange(None, [], "hello", "start", time.monotonic() + budget, budget)
        pings = []
        for _ in range(PINGS):
            began = time.perf_counter()
            self._exchange({"op": "ping"}, [], "pong", "start", time.monotonic() + budget, budget)
            pings.append(time.perf_counter() - began)
        self._ipc_s = sorted(pings)[PINGS // 2]
        try:
            loaded = self._exchange({"op": "load", "source": source, "filename": self._path.name}, [],
                                    "loaded", "import", time.monotonic() + budget, budget)
        except ValueError:  # wire.send refuses a header over its limit, before sending anything
            self._fail(f"the program is too large to load ({len(source.encode())} bytes of source; the loader "
                       f"takes at most {wire.HEADER_LIMIT // 1024} KiB, escaped as JSON)")
        self._takes_previous = loaded.header.get("previous") is True

    def call(self, weight: torch.Tensor, num_replicas: int, num_groups: int, num_nodes: int,
             num_gpus: int, previous: torch.Tensor | None = None) -> CallResult:
        """Run rebalance_experts on a private copy of `weight` ([L, E]), passing `previous` (the
        placement in force, [L, R]) to a program that takes it; CandidateFailure if it fails."""
        if self._state != "running":
            raise CandidateFailure(f"the candidate process is {self._state}, not running")
        self._calls += 1
        phase = f"call {self._calls}"
        layers, experts = weight.shape
        ends = time.monotonic() + self._limits.call_timeout_s
        inputs = [weight.detach().to("cpu").contiguous()]
        if previous is not None and self._takes_previous:
            inputs.append(previous.detach().to("cpu", torch.int64).contiguous())
        bound = 8 * layers * (num_replicas + experts * num_replicas + experts)  # bytes of any valid answer
        request = {"op": "run", "args": [int(num_replicas), int(num_groups), int(num_nodes), int(num_gpus)],
                   "max_output_bytes": bound}
        started = time.perf_counter_ns()
        reply = self._exchange(request, inputs, "result", phase, ends, self._limits.call_timeout_s, bound)
        round_trip_ns = time.perf_counter_ns() - started
        claimed_ns = reply.header.get("runtime_ns")
        if type(claimed_ns) is not int or len(reply.tensors) != 3:
            self._fail(f"protocol violation in {phase}: malformed result")
        moved = wire.Message({}, tuple(inputs)).payload_bytes + reply.payload_bytes
        runtime_s = self._checked_runtime(claimed_ns / 1e9, round_trip_ns / 1e9, moved)
        return CallResult(*reply.tensors, runtime_s=runtime_s, round_trip_s=round_trip_ns / 1e9,
                          reported_s=claimed_ns / 1e9)

    def yardstick_ms(self) -> float:
        """The yardstick's time now (evaluator.timing.yardstick), run by the keeper on the candidate's cores
        with the candidate stopped; call it between calls. CandidateFailure if the child has ended."""
        if self._state != "running":
            raise CandidateFailure(f"the candidate process is {self._state}, not running")
        assert self._lifeline is not None
        phase = f"the timing reference after call {self._calls}"
        try:
            wire.send_control(self._lifeline, {"op": "yardstick"})
            reply, _ = wire.recv_control(self._lifeline, timeout=YARDSTICK_TIMEOUT_S)
        except (OSError, wire.WireError):  # the keeper is gone (or hung): say how the child ended
            self._fail_ended(phase)
        if reply.get("op") != "yardstick":  # the keeper's report that the child ended meanwhile
            self._ending = reply
            self._fail_ended(phase)
        return int(reply["ns"]) / 1e6

    def output(self) -> str:
        """The child's stdout and stderr so far (head and tail, at most output_cap_bytes), with
        control characters other than newline and tab escaped (text.printable)."""
        return printable(self._capture.text(), one_line=False) if self._capture else ""

    def close(self) -> None:
        """Kill the child and every process it started; wait until they are gone and, with a uid
        of its own, its files too, then free the uid. Idempotent."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        self._state = "closed"
        assert self._data is not None and self._lifeline is not None
        self._data.close()
        try:
            wire.send_control(self._lifeline, {"op": "kill"})
        except OSError:
            pass  # the keeper is gone already
        self._read_ending(CLOSE_TIMEOUT_S)
        self._lifeline.close()
        if self._ending is None and self._server is not None and self._server.alive:
            # The keeper died without reporting (a candidate killed it): its processes were
            # reparented to the server; have it kill them before we say they are gone.
            try:
                self._server.request({"op": "sweep"})
            except (OSError, wire.WireError):
                pass
        self._release_uid()
        if self._capture is not None:
            self._capture.wait(CLOSE_TIMEOUT_S)

    # -- internals -------------------------------------------------------------------------

    def _spec(self) -> dict[str, Any]:
        """The spawn request's ChildSpec (keeper.py), with a uid claimed for it where the server
        switches users."""
        spec = {"device": self._device, "threads": self._limits.threads, "cpus": list(self._limits.cpus),
                "memory_mb": self._limits.memory_mb, "max_processes": self._limits.max_processes,
                "env": isolation.child_variables(self._limits.gpu)}
        if servers.server_for(self.sandbox).hello.get("switch_user"):
            spec["uid"], self._uid_lock = uids.claim_uid()
        return spec

    def _release_uid(self) -> None:
        if self._uid_lock is not None:
            os.close(self._uid_lock)
            self._uid_lock = None

    def _exchange(self, request: dict[str, Any] | None, tensors: list[torch.Tensor], op: str,
                  phase: str, until: float, budget_s: float, max_payload: int = 0) -> wire.Message:
        """Send `request` (if any), then return the reply, which must be an ok `op`; on anything
        else kill the child and fail with a reason naming `phase`.

        `until` (time.monotonic) ends the exchange, or the evaluation deadline if that comes
        first; `budget_s` is the limit to name in a timeout reason. A reply saying an exception
        was raised gets at most FORMAT_TIMEOUT_S more for the formatted exception.
        """
        assert self._data is not None
        limit = min(until, self._deadline)
        where = f"in {phase}" if phase.startswith("call") else "at import"
        with self._talking(phase, self._timeout_reason(limit, phase, budget_s)):
            if request is not None:
                self._data.settimeout(max(limit - time.monotonic(), 1e-3))
                wire.send(self._data, request, tensors)
            message = wire.recv(self._data, max_payload, deadline=limit)
        if message.header.get("op") == "raised":
            kind = str(message.header.get("type", "Error"))[:200]
            formatted_by = min(time.monotonic() + FORMAT_TIMEOUT_S, limit)
            reason = (f"{kind} {where}: formatting the exception timed out after {FORMAT_TIMEOUT_S:g} s"
                      if formatted_by < limit else self._timeout_reason(limit, phase, budget_s))
            with self._talking(phase, reason):
                message = wire.recv(self._data, max_payload, deadline=formatted_by)
        header = message.header
        if header.get("ok") is not True:
            kind = str(header.get("type", "Error"))[:200]
            text = " ".join(str(header.get("message", "")).split())[:500]
            self._fail(f"{kind} {where}: {text}" if text else f"{kind} {where}",
                       str(header.get("traceback", "")))
        if header.get("op") != op:
            self._fail(f"protocol violation during {phase}: expected {op!r}, "
                       f"got {str(header.get('op'))[:50]!r}")
        return message

    def _timeout_reason(self, limit: float, phase: str, budget_s: float) -> str:
        if limit >= self._deadline:
            return f"evaluation deadline of {self._limits.deadline_s} s exceeded during {phase}"
        return f"{phase} timed out after {budget_s} s"

    @contextmanager
    def _talking(self, phase: str, timeout_reason: str) -> Iterator[None]:
        """Fail the candidate, with a reason naming `phase`, if talking to the child fails."""
        try:
            yield
        except TimeoutError:
            self._fail(timeout_reason)
        except wire.PeerClosed:
            self._fail_ended(phase)
        except wire.WireError as exc:
            self._fail(f"protocol violation during {phase}: {exc}")
        except OSError:  # a broken pipe: the child is gone
            self._fail_ended(phase)

    def _checked_runtime(self, claimed_s: float, round_trip_s: float, payload: int) -> float:
        """The runtime to trust for a call (see "Timing" in the module docstring); `payload`: the
        bytes of its inputs and outputs."""
        transfer_s = payload / TRANSFER_FLOOR_BYTES_PER_S
        slack_s = (self._limits.timing_slack_s + self._limits.timing_slack_ratio * round_trip_s
                   + transfer_s)
        if not round_trip_s - slack_s <= claimed_s <= round_trip_s:
            self._fail(f"timing tampering: child reported {claimed_s * 1e3:.3f} ms, parent "
                       f"measured {round_trip_s * 1e3:.3f} ms in call {self._calls}")
        return max(claimed_s, round_trip_s - self._ipc_s - transfer_s - CLAMP_MARGIN_S)

    def _read_ending(self, timeout_s: float) -> None:
        """Collect the keeper's report of how the child ended, if not yet read."""
        if self._ending is not None or self._lifeline is None:
            return
        try:
            self._ending, _ = wire.recv_control(self._lifeline, timeout=timeout_s)
        except (OSError, wire.WireError):
            self._ending = None

    def _fail_ended(self, phase: str) -> NoReturn:
        """Fail because the child ended, saying how (from the keeper's report)."""
        self._read_ending(CLOSE_TIMEOUT_S)
        ending = self._ending or {}
        status = ending.get("status")
        if status == "signal":
            number = int(ending.get("signal", 0))
            try:
                how = f"killed by {signal.Signals(number).name}"
            except ValueError:
                how = f"killed by signal {number}"
        elif status == "exit":
            how = f"exited with status {ending.get('code')}"
        elif status == "memory":
            how = f"killed: memory limit of {ending.get('limit_mb')} MB exceeded"
        else:
            how = "the sandbox keeper died unexpectedly"
        self._fail(f"{how} during {phase}")

    def _fail(self, reason: str, traceback_text: str = "") -> NoReturn:
        """Kill everything, then raise CandidateFailure with the traceback and output tails."""
        self.close()
        parts = [traceback_text.strip()[-DETAIL_CHARS:]] if traceback_text.strip() else []
        captured = self.output()
        if captured.strip():
            parts.append("--- output (stdout+stderr) ---\n" + captured[-DETAIL_CHARS:])
        raise CandidateFailure(reason, "\n".join(parts))

