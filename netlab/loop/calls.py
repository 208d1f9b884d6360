"""Callables posted to the loop thread from any thread, and the wake-up that tells it.

The console and the worker pools never touch chat state: they post a callable
here, and one byte on a socket pair wakes the selector, which then runs them
all on the loop thread.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from netlab.netutil import wake_pair


class Calls:
    """A queue of callables for the loop thread, with the socket that wakes its selector."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.wake_r, self._wake_w = wake_pair()  # wake_r: registered in the selector

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread; safe from any thread."""
        self._queue.put(fn)
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run `fn` on the loop thread and return its result (or raise what it raised)."""
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:  # handed to the caller
                future.set_exception(exc)

        self.post(run)
        return future.result(timeout)

    def run(self) -> None:
        """Loop thread: the wake-up bytes are read, every posted callable runs."""
        with contextlib.suppress(BlockingIOError):
            while self.wake_r.recv(4096):
                pass
        while True:
            try:
                fn = self._queue.get_nowait()
            except queue.Empty:
                return
            fn()

    def close(self) -> None:
        self.wake_r.close()
        self._wake_w.close()
