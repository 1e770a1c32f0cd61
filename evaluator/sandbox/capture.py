"""Capped capture of a candidate's stdout/stderr: the first and the last bytes, and a count.

Why head and tail: the start of the output usually says what the program set out to do, the end
what went wrong; a program that prints gigabytes must neither fill memory nor stall (a writer
blocked on a full pipe would look like a hang), so a thread drains the pipe continuously and keeps
only `cap` bytes. `text()` first lets the thread drain what is already in the pipe, so output the
child flushed before answering a request is in the text read after the answer.
"""
from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import threading
import time

SETTLE_S = 0.2


class OutputCapture:
    """Drains a pipe on a daemon thread, keeping its first and last `cap // 2` bytes."""

    def __init__(self, read_fd: int, cap: int) -> None:
        self._fd = read_fd
        self._head_cap = cap // 2
        self._tail_cap = cap - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._open = True
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="candidate-output", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        try:
            while True:
                poller.poll()
                # Read and keep under one lock, so that an empty pipe (see text()) means all of it
                # is in the buffers -- no chunk can be in flight between the two.
                with self._lock:
                    chunk = os.read(self._fd, 1 << 16)
                    if not chunk:
                        return
                    self._keep(chunk)
        finally:
            with self._lock:
                self._open = False
                os.close(self._fd)

    def _keep(self, chunk: bytes) -> None:
        self._total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        if len(self._tail) > 2 * self._tail_cap:  # trim in batches, not per chunk
            del self._tail[:-self._tail_cap]

    def _pending(self) -> int:
        """Bytes written to the pipe but not yet read by the thread."""
        with self._lock:
            if not self._open:
                return 0
            raw = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", raw)[0]

    def text(self) -> str:
        """What was captured so far, with a marker where bytes were left out."""
        end = time.monotonic() + SETTLE_S
        while self._pending() and time.monotonic() < end:
            time.sleep(0.001)
        with self._lock:
            head, tail, total = bytes(self._head), bytes(self._tail[-self._tail_cap:]), self._total
        omitted = total - len(head) - len(tail)
        middle = f"\n[... {omitted} bytes of output omitted ...]\n".encode() if omitted > 0 else b""
        return (head + middle + tail).decode("utf-8", errors="replace")

    def tail(self, chars: int) -> str:
        """The last `chars` characters of `text()`."""
        return self.text()[-chars:]

    def wait(self, timeout: float) -> bool:
        """Wait for EOF (every writer gone); True if it came."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
