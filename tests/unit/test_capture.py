"""Output capture: keeps the head and the tail within the cap, counts what it left out, never blocks."""
from __future__ import annotations

import os
import threading

from evaluator.sandbox.capture import OutputCapture


def _feed(chunks: list[bytes], cap: int) -> OutputCapture:
    read_fd, write_fd = os.pipe()
    capture = OutputCapture(read_fd, cap)
    for chunk in chunks:
        os.write(write_fd, chunk)
    os.close(write_fd)
    assert capture.wait(10)
    return capture


def test_small_output_is_kept_whole():
    assert _feed([b"hello\n", "wörld\n".encode()], 1024).text() == "hello\nwörld\n"


def test_large_output_keeps_head_and_tail_and_says_how_much_was_omitted():
    body = [b"HEAD-LINE\n"] + [b"m" * 4096] * 2000 + [b"TAIL-LINE\n"]
    total = sum(map(len, body))
    text = _feed(body, 1000).text()
    assert text.startswith("HEAD-LINE\n") and text.endswith("TAIL-LINE\n")
    assert f"[... {total - 1000} bytes of output omitted ...]" in text
    assert len(text) < 1100


def test_a_writer_flooding_the_pipe_is_drained_not_blocked():
    read_fd, write_fd = os.pipe()
    capture = OutputCapture(read_fd, 4096)
    block = b"z" * (1 << 20)
    writer = threading.Thread(target=lambda: [os.write(write_fd, block) for _ in range(64)])
    writer.start()
    writer.join(30)
    assert not writer.is_alive(), "64 MiB through a 64 KiB pipe: the capture must keep reading"
    os.close(write_fd)
    assert capture.wait(10)
    assert "67104768 bytes of output omitted" in capture.text()


def test_text_includes_everything_written_before_it_is_called():
    read_fd, write_fd = os.pipe()
    capture = OutputCapture(read_fd, 1 << 20)
    for i in range(200):
        os.write(write_fd, b"%d " % i)
        assert capture.text().endswith(f"{i} ")  # no lag behind the writer
    os.close(write_fd)
    assert capture.wait(10)
