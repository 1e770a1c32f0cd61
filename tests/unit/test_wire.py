"""The wire format: tensors round-trip exactly; anything oversized or malformed is refused unread."""
from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import pytest
import torch

from evaluator.sandbox import wire


@pytest.fixture()
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _send_async(sock: socket.socket, data: bytes) -> threading.Thread:
    thread = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
    thread.start()
    return thread


def _raw(header: dict) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("!I", len(head)) + head


@pytest.mark.parametrize("dtype", list(wire.DTYPES.values()))
def test_tensors_round_trip_exactly_as_fresh_plain_tensors(pair, dtype):
    a, b = pair
    source = (torch.arange(24) % 7).reshape(2, 3, 4).to(dtype)
    empty = torch.empty(0, 5, dtype=dtype)
    wire.send(a, {"op": "x", "n": 3}, [source, empty])
    message = wire.recv(b, max_payload=1 << 20, deadline=time.monotonic() + 5)
    assert message.header == {"op": "x", "n": 3}
    got, got_empty = message.tensors
    assert type(got) is torch.Tensor and got.dtype == dtype and torch.equal(got, source)
    assert got.shape == (2, 3, 4) and got_empty.shape == (0, 5)
    got.fill_(0)  # a private, writable copy: the sender's tensor is untouched
    assert torch.equal(source, (torch.arange(24) % 7).reshape(2, 3, 4).to(dtype))


def test_payload_over_the_bound_is_refused_before_reading(pair):
    a, b = pair
    a.sendall(_raw({"op": "r", "tensors": [{"dtype": "int64", "shape": [1 << 40]}]}))
    with pytest.raises(wire.WireError, match="more than 1024 bytes"):
        wire.recv(b, max_payload=1024, deadline=time.monotonic() + 5)


@pytest.mark.parametrize("header", [
    {"op": "r", "tensors": [{"dtype": "object", "shape": [1]}]},
    {"op": "r", "tensors": [{"dtype": "int64", "shape": [-1]}]},
    {"op": "r", "tensors": [{"dtype": "int64", "shape": [1.5]}]},
    {"op": "r", "tensors": [{"dtype": "int64", "shape": [1] * 9}]},
    {"op": "r", "tensors": "all of them"},
])
def test_malformed_tensor_specs_are_refused(pair, header):
    a, b = pair
    a.sendall(_raw(header))
    with pytest.raises(wire.WireError, match="bad tensor|not a list"):
        wire.recv(b, max_payload=1 << 20, deadline=time.monotonic() + 5)


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b"not json", b"[1, 2]"])
def test_non_object_or_absurd_json_headers_are_refused(pair, body):
    a, b = pair
    _send_async(a, struct.pack("!I", len(body)) + body)
    with pytest.raises(wire.WireError, match="header is not"):
        wire.recv(b, max_payload=0, deadline=time.monotonic() + 5)


def test_oversized_header_length_is_refused(pair):
    a, b = pair
    a.sendall(struct.pack("!I", wire.HEADER_LIMIT + 1))
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.recv(b, max_payload=0, deadline=time.monotonic() + 5)


def test_deadline_and_closed_peer(pair):
    a, b = pair
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        wire.recv(b, max_payload=0, deadline=time.monotonic() + 0.2)
    assert 0.15 < time.monotonic() - began < 2
    a.sendall(_raw({"op": "half", "tensors": [{"dtype": "int64", "shape": [4]}]}) + b"\0" * 8)
    a.close()
    with pytest.raises(wire.PeerClosed):
        wire.recv(b, max_payload=1024, deadline=time.monotonic() + 5)


def test_control_messages_carry_file_descriptors():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    wire.send_control(a, {"op": "spawn"}, [w])
    os.close(w)
    message, fds = wire.recv_control(b, max_fds=1, timeout=5)
    assert message == {"op": "spawn"} and len(fds) == 1
    os.write(fds[0], b"through the passed fd")
    os.close(fds[0])
    assert os.read(r, 100) == b"through the passed fd"
    a.close()
    with pytest.raises(wire.PeerClosed):
        wire.recv_control(b, timeout=5)
    b.close()
    os.close(r)
