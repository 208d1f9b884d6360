"""FairPool: a free worker goes to the next address in turn, not the longest queue."""

from __future__ import annotations

import queue
import threading

from netlab.fairpool import FairPool


def test_addresses_take_turns_however_much_one_asked_for():
    pool = FairPool(1, "test")
    started: list[str] = []
    finished: queue.SimpleQueue = queue.SimpleQueue()
    first_may_end = threading.Event()

    def job(name: str, gate: threading.Event | None = None):
        def work() -> None:
            started.append(name)
            if gate is not None:
                gate.wait()
        return work

    # One worker, busy with flood-1 while the rest queue: five more from the flood, then
    # one each from two other addresses.
    pool.submit("10.0.0.1", job("flood-1", first_may_end), finished.put)
    for n in range(2, 7):
        pool.submit("10.0.0.1", job(f"flood-{n}"), finished.put)
    pool.submit("10.0.0.2", job("alice"), finished.put)
    pool.submit("10.0.0.3", job("bob"), finished.put)
    first_may_end.set()
    for _ in range(8):  # as the loop does: one job_finished per job done, on one thread
        finished.get(timeout=10)
        pool.job_finished()
    pool.shutdown()
    assert started == ["flood-1", "flood-2", "alice", "bob", "flood-3", "flood-4", "flood-5", "flood-6"]
