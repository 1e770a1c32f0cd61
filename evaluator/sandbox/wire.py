"""Message formats between the evaluator, its fork server and a candidate's child process.

Why not pickle: the child runs untrusted code, and unpickling lets the sender run code in the
receiver. A data message is a 4-byte length, a JSON header (plain data only) and then the raw bytes
of the tensors the header lists by dtype and shape. The receiver checks every size against a bound
*before* allocating or reading, and rebuilds tensors with `torch.frombuffer` over a buffer it owns,
so what it gets back is always a plain CPU tensor, whatever object the sender started from.

Control messages (evaluator <-> fork server <-> keeper, all trusted code) are single JSON datagrams
on SOCK_SEQPACKET sockets, which keep message boundaries and can carry file descriptors.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

HEADER_LIMIT = 256 * 1024  # bytes of JSON per data message; tracebacks are cut to fit well below
CONTROL_LIMIT = 64 * 1024
MAX_DIMS = 8
_LENGTH = struct.Struct("!I")

DTYPES: dict[str, torch.dtype] = {
    "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class WireError(Exception):
    """The peer broke the protocol: a malformed or oversized message."""


class PeerClosed(WireError):
    """The peer closed its end (it exited, crashed or was killed)."""


@dataclass(frozen=True)
class Message:
    header: dict[str, Any]
    tensors: tuple[torch.Tensor, ...]

    @property
    def payload_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors)


def dtype_name(dtype: torch.dtype) -> str | None:
    """The wire name of a dtype, or None when the format does not carry it."""
    return _DTYPE_NAMES.get(dtype)


def send(sock: socket.socket, header: dict[str, Any], tensors: Sequence[torch.Tensor] = ()) -> None:
    """Send one data message. Tensors must be contiguous CPU tensors of a dtype in DTYPES."""
    specs = []
    for t in tensors:
        name = dtype_name(t.dtype)
        if name is None or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"cannot send a {t.dtype} tensor on {t.device} (contiguous={t.is_contiguous()})")
        specs.append({"dtype": name, "shape": list(t.shape)})
    head = json.dumps({**header, "tensors": specs}).encode()
    if len(head) > HEADER_LIMIT:
        raise ValueError(f"header of {len(head)} bytes exceeds {HEADER_LIMIT}")
    sock.sendall(_LENGTH.pack(len(head)) + head)
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if nbytes:
            # A view of the tensor's memory: no copy; `t` stays referenced until sendall returns.
            sock.sendall(memoryview((ctypes.c_ubyte * nbytes).from_address(t.data_ptr())))


def recv(sock: socket.socket, max_payload: int, deadline: float | None = None) -> Message:
    """Receive one data message, refusing one whose tensors exceed `max_payload` bytes in all.

    `deadline` is a `time.monotonic()` instant; past it, TimeoutError is raised.
    """
    (length,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size, deadline))
    if length > HEADER_LIMIT:
        raise WireError(f"header of {length} bytes exceeds the {HEADER_LIMIT}-byte limit")
    header = _parse_json(_recv_exact(sock, length, deadline))
    specs = _check_specs(header.pop("tensors", []), max_payload)
    tensors = []
    for dtype, shape, nbytes in specs:
        if nbytes == 0:
            tensors.append(torch.empty(shape, dtype=dtype))
            continue
        buffer = bytearray(nbytes)
        _recv_into(sock, memoryview(buffer), deadline)
        tensors.append(torch.frombuffer(buffer, dtype=dtype).reshape(shape))
    return Message(header, tuple(tensors))


def _check_specs(specs: Any, max_payload: int) -> list[tuple[torch.dtype, list[int], int]]:
    if not isinstance(specs, list):
        raise WireError("'tensors' is not a list")
    checked, total = [], 0
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("dtype") not in DTYPES:
            raise WireError(f"bad tensor spec {str(spec)[:200]!r}")
        shape = spec.get("shape")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(type(d) is int and d >= 0 for d in shape)):
            raise WireError(f"bad tensor shape {str(shape)[:200]!r}")
        dtype = DTYPES[spec["dtype"]]
        nbytes = math.prod(shape) * dtype.itemsize
        total += nbytes
        if total > max_payload:
            raise WireError(f"tensors of more than {max_payload} bytes (the bound for this message)")
        checked.append((dtype, shape, nbytes))
    return checked


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise WireError(f"header is not JSON: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise WireError("header is not a JSON object")
    return value


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buffer = bytearray(n)
    _recv_into(sock, memoryview(buffer), deadline)
    return bytes(buffer)


def _recv_into(sock: socket.socket, view: memoryview, deadline: float | None) -> None:
    while len(view):
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed while receiving")
            sock.settimeout(remaining)
        try:
            got = sock.recv_into(view)
        except ConnectionResetError:
            got = 0
        if got == 0:
            raise PeerClosed("peer closed the connection")
        view = view[got:]


def send_control(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    """Send one control datagram, optionally carrying file descriptors."""
    socket.send_fds(sock, [json.dumps(message).encode()], list(fds))


def recv_control(sock: socket.socket, max_fds: int = 0,
                 timeout: float | None = None) -> tuple[dict[str, Any], list[int]]:
    """Receive one control datagram; PeerClosed when the peer is gone, TimeoutError after `timeout`."""
    sock.settimeout(timeout)
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, CONTROL_LIMIT, max_fds)
    except ConnectionResetError:
        data, fds = b"", []
    if not data:
        for fd in fds:
            _close_quietly(fd)
        raise PeerClosed("control peer closed")
    return _parse_json(data), fds


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
