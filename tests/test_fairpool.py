"""FairPool: a free worker goes to the next address in turn, not the longest queue."""

from __future__ import annotations

import queue
import threading

from netlab.fairpool import FairPool


def test_addresses_take_turns_however_much_one_asked_for():
    finished: queue.SimpleQueue = queue.SimpleQueue()  # the owner's thread: the test's
    pool = FairPool(1, "test", finished.put)
    started: list[str] = []
    results: list = []
    first_may_end = threading.Event()

    def job(name: str, gate: threading.Event | None = None):
        def work() -> None:
            started.append(name)
            if gate is not None:
                gate.wait()
        return work

    # One worker, busy with flood-1 while the rest queue: five more from the flood, then
    # one each from two other addresses.
    pool.submit("10.0.0.1", job("flood-1", first_may_end), results.append)
    for n in range(2, 7):
        pool.submit("10.0.0.1", job(f"flood-{n}"), results.append)
    pool.submit("10.0.0.2", job("alice"), results.append)
    pool.submit("10.0.0.3", job("bob"), results.append)
    first_may_end.set()
    for _ in range(8):  # as the loop does: what the pool posts runs on one thread
        finished.get(timeout=10)()
    pool.shutdown()
    assert results == [None] * 8
    assert started == ["flood-1", "flood-2", "alice", "bob", "flood-3", "flood-4", "flood-5", "flood-6"]
