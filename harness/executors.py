"""Where the controller's work runs: a local pool of daemon worker threads.

The heavy work of an evaluation happens in the isolated child process (see `evaluator.sandbox`),
and proposals wait on the network, so threads are enough to keep `--concurrency` of each in
flight. The threads are daemons: Ctrl-C or a deadline never waits for a stalled model call, and
the sandbox kills every candidate process when the harness exits.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable


class LocalExecutor:
    """`submit(fn, *args) -> Future` on `workers` daemon threads."""

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"eplb-worker-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as error:  # handed to the controller, which decides
                future.set_exception(error)

    def shutdown(self) -> None:
        """Stop taking jobs; threads still busy finish on their own (they are daemons)."""
        for _ in self._threads:
            self._jobs.put(None)
