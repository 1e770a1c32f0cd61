"""What runs inside a candidate's child process: load the program, call it, time it, send results.

Everything here is untrusted once the program is loaded -- the program shares this process and can
patch any of it (the clock, this module, the wire format). That is fine by design: the evaluator
trusts nothing the child says beyond plain data it re-checks. The runtime reported here is a
*claim* that the evaluator tests against its own clock (see sandbox.py); the outputs are bytes it
rebuilds into fresh tensors. This module's job is to give an honest program a precise, fair timing:
the input is staged on the device before the clock starts, and the outputs are copied to the CPU
before it stops (which also forces CUDA to finish, even if the program patched synchronize()).

Messages (see wire.py): the child sends `hello` first, then answers each request in turn:
`ping` -> `pong` (the evaluator times these before loading the program, while this process is
still trustworthy, to learn the IPC overhead); `load` (program source) -> `loaded`; `stage` (the
window + arguments) -> `staged`; `run` -> `result` with the three output tensors and `runtime_ns`.
Failures answer `ok: false` with the exception's type, message and traceback tail.
"""
from __future__ import annotations

import linecache
import os
import socket
import sys
import time
import traceback
import types
from typing import Any, Callable, NoReturn

import torch

from evaluator.sandbox import wire

ENTRY_POINT = "rebalance_experts"
MODULE_NAME = "candidate_program"
TRACEBACK_CHARS = 8000
INPUT_LIMIT = 1 << 31  # bytes of input per message; the evaluator sends one [L, E] window


def serve(sock: socket.socket, device: str) -> NoReturn:
    """Answer the evaluator's requests until it hangs up, then exit."""
    wire.send(sock, {"op": "hello", "ok": True, "pid": os.getpid()})
    program: Callable[..., Any] | None = None
    staged: tuple[torch.Tensor, tuple[int, ...]] | None = None
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
        elif op == "stage":
            staged = None  # drop the previous window before taking the next one
            staged = _stage(sock, message, device)
        elif op == "run" and program is not None and staged is not None:
            weight, args = staged
            staged = None
            _run(sock, program, weight, args, int(message.header["max_output_bytes"]))
            del weight
        else:
            wire.send(sock, {"op": "error", "ok": False, "type": "ProtocolError",
                             "message": f"unexpected request {op!r}", "traceback": ""})


def _load(sock: socket.socket, header: dict[str, Any]) -> Callable[..., Any] | None:
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
    except BaseException as exc:  # noqa: BLE001 -- SystemExit and KeyboardInterrupt are failures too
        _report(sock, "loaded", exc)
        return None
    _flush()
    wire.send(sock, {"op": "loaded", "ok": True})
    return entry


def _stage(sock: socket.socket, message: wire.Message,
           device: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    weight = message.tensors[0].to(device)
    if weight.is_cuda:
        torch.cuda.synchronize(weight.device)
    args = tuple(int(a) for a in message.header["args"])
    wire.send(sock, {"op": "staged", "ok": True})
    return weight, args


def _run(sock: socket.socket, program: Callable[..., Any], weight: torch.Tensor,
         args: tuple[int, ...], max_output_bytes: int) -> None:
    start = time.perf_counter_ns()
    try:
        outputs = _to_cpu(program(weight, *args))
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
    kind = "BadReturn" if isinstance(exc, _BadReturn) else type(exc).__name__
    try:
        message = str(exc)
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next
                                            if exc.__traceback__ else None)
    except Exception:  # noqa: BLE001 -- a hostile __str__ must not take the child down
        message, frames = "<unprintable exception>", []
    _flush()
    _fail(sock, op, kind, message, "".join(frames)[-TRACEBACK_CHARS:])


def _fail(sock: socket.socket, op: str, kind: str, message: str, tb: str = "") -> None:
    wire.send(sock, {"op": op, "ok": False, "type": kind[:200], "message": message[:2000],
                     "traceback": tb})


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
