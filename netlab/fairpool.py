"""A worker pool that takes turns between client addresses, and posts results back itself.

A plain pool serves its queue first come, first served: one address that sends
a thousand registrations at once puts every other user's login behind a
thousand Argon2 hashes, some twenty seconds. Here each address queues apart,
and a free worker takes the oldest job of the next address in turn, so a login
waits for about one job per address ahead of it, however much one of them
asked for.

Not thread-safe by design: `submit` runs on the owner's thread (the chat
loop's), and a finished job comes back to that thread through `post` (the
loop's call queue), where the pool frees its worker before it hands the result
on. The owner has nothing to remember.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

#: Runs a callable on the owner's thread (e.g. `Calls.post`); called from a worker.
Post = Callable[[Callable[[], None]], None]
Job = tuple[Callable[[], Any], Callable[[Any], None]]


class FairPool:
    def __init__(self, workers: int, name: str, post: Post) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._workers = workers
        self._post = post
        self._running = 0
        #: Jobs submitted and not yet handed back (waiting or running): /metrics' pending hashes.
        self.pending = 0
        #: address -> its jobs not started yet; the first address is next in turn.
        self._waiting: OrderedDict[str, deque[Job]] = OrderedDict()

    def submit(self, address: str, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run `work` in a worker when the address's turn comes; `done(result)` runs on the
        owner's thread afterwards, with the exception as the result if `work` raised."""
        self._waiting.setdefault(address, deque()).append((work, done))
        self.pending += 1
        self._start()

    def shutdown(self) -> None:
        self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> None:
        while self._running < self._workers and self._waiting:
            address, jobs = next(iter(self._waiting.items()))
            work, done = jobs.popleft()
            if jobs:
                self._waiting.move_to_end(address)  # its next job after the others' turns
            else:
                del self._waiting[address]
            self._running += 1
            self._executor.submit(work).add_done_callback(lambda future, done=done: self._back(future, done))

    def _back(self, future: Future, done: Callable[[Any], None]) -> None:
        """In the worker: the result goes to the owner's thread."""
        if future.cancelled():
            return  # shut down
        result = future.exception() or future.result()
        self._post(lambda: self._finished(done, result))

    def _finished(self, done: Callable[[Any], None], result: Any) -> None:
        """On the owner's thread: the worker is free for the next address in turn, then `done`."""
        self._running -= 1
        self.pending -= 1
        self._start()
        done(result)
