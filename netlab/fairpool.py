"""A worker pool that takes turns between client addresses.

A plain pool serves its queue first come, first served: one address that sends
a thousand registrations at once puts every other user's login behind a
thousand Argon2 hashes, some twenty seconds. Here each address queues apart,
and a free worker takes the oldest job of the next address in turn, so a login
waits for about one job per address ahead of it, however much one of them
asked for.

Not thread-safe by design: `submit` and `job_finished` run on the chat loop's
thread (a job's completion reaches it through the loop's wake-up channel).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Job = tuple[Callable[[], Any], Callable[[Future], None]]


class FairPool:
    def __init__(self, workers: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._workers = workers
        self._running = 0
        #: address -> its jobs not started yet; the first address is next in turn.
        self._waiting: OrderedDict[str, deque[Job]] = OrderedDict()

    def submit(self, address: str, work: Callable[[], Any], on_done: Callable[[Future], None]) -> None:
        """Run `work` in a worker when the address's turn comes; `on_done(future)` runs
        in that worker, and the owner then calls `job_finished` on its own thread."""
        self._waiting.setdefault(address, deque()).append((work, on_done))
        self._start()

    def job_finished(self) -> None:
        """A worker is free: the next address in turn gets it."""
        self._running -= 1
        self._start()

    def shutdown(self) -> None:
        self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> None:
        while self._running < self._workers and self._waiting:
            address, jobs = next(iter(self._waiting.items()))
            work, on_done = jobs.popleft()
            if jobs:
                self._waiting.move_to_end(address)  # its next job after the others' turns
            else:
                del self._waiting[address]
            self._running += 1
            self._executor.submit(work).add_done_callback(on_done)
