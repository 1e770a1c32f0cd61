"""What runs inside a candidate's child process: load the program, call it, time it, send results.

Everything here is untrusted once the program is loaded -- the program shares this process and can
patch any of it (the clock, this module, the wire format). That is fine by design: the evaluator
trusts nothing the child says beyond plain data it re-checks, and times every call with its own
clock too. The runtime reported here is a *claim* that the evaluator tests against its own clock
(see candidate_process.py); the outputs are bytes it rebuilds into fresh tensors. This module's
job is to give an honest program a precise, fair timing: the input is moved to the device before
the clock starts, and the outputs are copied to the CPU before it stops (which also forces CUDA to
finish, even if the program patched synchronize()).

Messages (see wire.py): the child sends `hello` first, then answers each request in turn:
`ping` -> `pong` (the evaluator times these before loading the program, while this process is
still trustworthy, to learn the IPC overhead); `load` (program source) -> `loaded`, saying whether
the program takes the previous placement; `run` (the window, its arguments and, for a program that
takes it, the previous placement) -> `result` with the three output tensors and `runtime_ns`.
The window arrives *in* the timed request, never before it: whatever the program (or a patched
child) does with it happens inside the evaluator's own timed span.
Failures answer `ok: false` with the exception's type, message and traceback tail; for an
exception, a `raised` message with its type goes first, because formatting it runs the program's
own code (`__str__`), which may never return: the evaluator then waits only a short while more.

Before loading the program, `seal_imports` makes the evaluator's and harness's own packages
unimportable here (a candidate could otherwise import evaluator.workloads and regenerate the
windows it is scored on): their modules leave sys.modules, the path entries and finders that lead
to them leave sys.path and sys.meta_path, and a finder that refuses their names goes first. In the
bwrap sandbox their files are not even in view (isolation.py); in the process sandbox a program
that goes looking for the files by path can still read what its uid may read.
"""
from __future__ import annotations

import inspect
import linecache
import os
import socket
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any, NoReturn

import torch

from evaluator.sandbox import wire

ENTRY_POINT = "rebalance_experts"
PREVIOUS = "old_global_expert_indices"  # vLLM's name for the placement in force, [L, R] int64
MODULE_NAME = "candidate_program"
TRACEBACK_CHARS = 8000
INPUT_LIMIT = 1 << 31  # bytes of input per message; the evaluator sends one [L, E] window
OWN_PACKAGES = ("evaluator", "harness")


def serve(sock: socket.socket, device: str) -> NoReturn:
    """Answer the evaluator's requests until it hangs up, then exit."""
    wire.send(sock, {"op": "hello", "ok": True, "pid": os.getpid()})
    program: _Program | None = None
    while True:
        try:
            message = wire.recv(sock, INPUT_LIMIT)
        except wire.PeerClosed:
            _exit(0)
        op = message.header.get("op")
        if op == "ping":
            wire.send(sock, {"op": "pong", "ok": True})
        elif op == "load":
            program = _load(sock, message.header)
        elif op == "run" and program is not None:
            _run(sock, program, message, device)
        else:
            wire.send(sock, {"op": "error", "ok": False, "type": "ProtocolError",
                             "message": f"unexpected request {op!r}", "traceback": ""})
        del message  # the window goes before the next one comes


class _Program:
    """The loaded entry point, and whether it takes the previous placement (PREVIOUS)."""

    def __init__(self, entry: Callable[..., Any]) -> None:
        self.entry = entry
        self.takes_previous = _takes_previous(entry)


def _takes_previous(entry: Callable[..., Any]) -> bool:
    """True if `entry` has a parameter named PREVIOUS that can be passed by keyword, or **kwargs."""
    try:
        parameters = inspect.signature(entry).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD
               or (p.name == PREVIOUS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
               for p in parameters)


def _load(sock: socket.socket, header: dict[str, Any]) -> _Program | None:
    source, filename = header["source"], header["filename"]
    module = types.ModuleType(MODULE_NAME)
    module.__file__ = filename
    sys.modules[MODULE_NAME] = module
    # Lets tracebacks quote the program's lines although the file itself is not visible here.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
        entry = getattr(module, ENTRY_POINT, None)
        if not callable(entry):
            _flush()
            wire.send(sock, {"op": "loaded", "ok": False, "type": "MissingEntryPoint",
                             "message": f"the program defines no callable {ENTRY_POINT}()",
                             "traceback": ""})
            return None
        program = _Program(entry)
    except BaseException as exc:  # noqa: BLE001 -- SystemExit and KeyboardInterrupt are failures too
        _report(sock, "loaded", exc)
        return None
    _flush()
    wire.send(sock, {"op": "loaded", "ok": True, "previous": program.takes_previous})
    return program


def _run(sock: socket.socket, program: _Program, message: wire.Message, device: str) -> None:
    weight, *previous = (t.to(device) for t in message.tensors)
    if weight.is_cuda:
        torch.cuda.synchronize(weight.device)
    args = tuple(int(a) for a in message.header["args"])
    kwargs = {PREVIOUS: previous[0] if previous else None} if program.takes_previous else {}
    max_output_bytes = int(message.header["max_output_bytes"])
    start = time.perf_counter_ns()
    try:
        outputs = _to_cpu(program.entry(weight, *args, **kwargs))
    except BaseException as exc:  # noqa: BLE001
        _report(sock, "result", exc)
        return
    runtime_ns = time.perf_counter_ns() - start
    total = sum(t.numel() * t.element_size() for t in outputs)
    unsupported = [i for i, t in enumerate(outputs) if wire.dtype_name(t.dtype) is None]
    _flush()
    if unsupported:
        _fail(sock, "result", "BadReturn",
              f"output {unsupported[0]} has dtype {outputs[unsupported[0]].dtype}, "
              "which is not a plain integer/float/bool dtype")
    elif total > max_output_bytes:
        _fail(sock, "result", "BadReturn",
              f"the outputs hold {total} bytes, more than the {max_output_bytes} any valid "
              "answer for this shape needs")
    else:
        wire.send(sock, {"op": "result", "ok": True, "runtime_ns": runtime_ns},
                  [t.contiguous() for t in outputs])


def _to_cpu(value: object) -> list[torch.Tensor]:
    """Check the return is a 3-tuple of tensors and bring them to the CPU as plain tensors."""
    if not isinstance(value, tuple):
        raise _BadReturn(f"returned {type(value).__name__}, expected a tuple "
                         "(phy2log, log2phy, logcnt) of 3 tensors")
    if len(value) != 3:
        raise _BadReturn(f"returned a tuple of {len(value)} items, expected 3 tensors")
    outputs = []
    for i, item in enumerate(value):
        if not isinstance(item, torch.Tensor):
            raise _BadReturn(f"returned a tuple whose item {i} is {type(item).__name__}, "
                             "expected a tensor")
        outputs.append(item.detach().as_subclass(torch.Tensor).to("cpu"))
    return outputs


class _BadReturn(Exception):
    """The program returned something other than a 3-tuple of tensors."""


def _report(sock: socket.socket, op: str, exc: BaseException) -> None:
    """Say that `exc` was raised (its type first: formatting it may hang, see the docstring)."""
    kind = "BadReturn" if issubclass(type(exc), _BadReturn) else _type_name(type(exc))
    # The type goes first, before any of the program's code (a __str__, a flush) runs again.
    wire.send(sock, {"op": "raised", "ok": False, "type": kind[:200]})
    try:
        message = str(exc)
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next
                                            if exc.__traceback__ else None)
    except Exception:  # noqa: BLE001 -- a hostile __str__ must not take the child down
        message, frames = "<unprintable exception>", []
    _flush()
    _fail(sock, op, kind, message, "".join(frames)[-TRACEBACK_CHARS:])


def _type_name(cls: type) -> str:
    """`cls.__name__` as a plain str, without running any code of the program's (a metaclass
    property, a str subclass)."""
    return str.__str__(type.__dict__["__name__"].__get__(cls, type))


def _fail(sock: socket.socket, op: str, kind: str, message: str, tb: str = "") -> None:
    wire.send(sock, {"op": op, "ok": False, "type": kind[:200], "message": message[:2000],
                     "traceback": tb})


def seal_imports() -> None:
    """Make OWN_PACKAGES unimportable in this process (see the module docstring)."""
    for name in [name for name in sys.modules if name.partition(".")[0] in OWN_PACKAGES]:
        del sys.modules[name]
    sys.path[:] = [entry for entry in sys.path if not _holds_own_package(entry)]
    sys.meta_path[:] = [_RefuseOwnPackages()] + [f for f in sys.meta_path if not _finds_own_package(f)]
    sys.path_importer_cache.clear()


def _holds_own_package(entry: str) -> bool:
    """A sys.path entry that leads to one of OWN_PACKAGES and to nothing a program may import
    (an installation that put them beside torch keeps its entry: the refusing finder covers it)."""
    def has(name: str) -> bool:
        return os.path.isdir(os.path.join(entry, name))
    return any(has(name) for name in OWN_PACKAGES) and not has("torch")


def _finds_own_package(finder: object) -> bool:
    """A finder other than Python's own that resolves one of OWN_PACKAGES (an editable install's)."""
    if getattr(finder, "__module__", "").startswith("_frozen_importlib"):
        return False
    try:
        return any(finder.find_spec(name, None) is not None for name in OWN_PACKAGES)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 -- a finder that cannot answer cannot find them either
        return False


class _RefuseOwnPackages:
    """A meta path finder that refuses OWN_PACKAGES and their modules by name."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in OWN_PACKAGES:
            raise ModuleNotFoundError(f"No module named {name!r} (the evaluator's own packages are "
                                      "not importable by candidates)", name=name)


def _flush() -> None:
    """Push the program's buffered prints into the captured output before answering."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 -- a program may have replaced or closed them
            pass


def _exit(code: int) -> NoReturn:
    _flush()
    os._exit(code)
