"""The clients' background threads, which leave Ctrl-C to the main thread.

The kernel hands a process-wide SIGINT to any thread that does not block it. Python
raises KeyboardInterrupt in the main thread only, and only once that thread runs
again: if the signal lands on a background thread while the main one waits (for the
session's end, in select or recv), nothing wakes it and Ctrl-C is lost. Seen as a
client that ignored Ctrl-C now and then in the test suite. A thread started here
blocks SIGINT, so the signal always goes to the main thread, whose wait it breaks.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


def start_quiet_thread(target: Callable[..., Any], *args: Any, name: str | None = None) -> threading.Thread:
    """Start a daemon thread running target(*args) with SIGINT blocked in it."""

    def run() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        target(*args)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
