"""The bus's two threads per node: the writer (publishes, pipelined) and the reader (the
fan-out stream, `XREAD BLOCK`). The loop never waits on Redis: it hands the writer a
publish and gets the answer back through its wake-up channel, as a worker's result; the
reader hands it the stream's entries the same way (docs/scale-out.md, "A `say` in bus mode").

`post` is the loop's `Calls.post`: it runs a callable on the loop thread. Tests pass one
that runs it at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from netlab.bus.publish import FANOUT, FANOUT_CAP, FanoutItem, Publish, Published, Publisher

log = logging.getLogger("netlab.chat")

Post = Callable[[Callable[[], None]], None]
Answer = Published | Exception

#: Publishes sent in one pipeline at most: one round trip carries this many scripts, and a
#: batch's answers come back together, so a bigger batch adds latency to its first message.
#: The queue itself needs no bound of its own: a `say` holds its session until its answer,
#: so at most one publish per session waits (max_clients in all).
MAX_BATCH = 256
#: The reader's XREAD waits this long for an entry before it looks whether it must stop:
#: the longest a node's stop waits for its reader.
READ_BLOCK_MS = 1_000
#: Entries one XREAD returns at most (one post to the loop each batch).
READ_COUNT = 512
#: Batches posted to the loop and not yet delivered, at most: a loop that falls behind makes
#: the reader wait (the entries stay in Redis) instead of piling them up in this process.
READ_AHEAD = 4
#: After a failed read the reader waits this long, doubling up to the ceiling, before the
#: next try: a Redis that is down is not hammered, and one that returns is found within 2 s.
RETRY_FIRST, RETRY_CEILING = 0.1, 2.0


class BusWriter:
    """One thread that sends every publish queued while it was busy in one pipeline (the
    bus's group commit: Redis fsyncs the batch's AOF writes together)."""

    def __init__(self, client: redis.Redis, post: Post, max_batch: int = MAX_BATCH,
                 fanout_cap: int = FANOUT_CAP) -> None:
        self._publisher = Publisher(client, fanout_cap)
        self._post = post
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Publish, Callable[[Answer], None]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="bus-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, message: Publish, done: Callable[[Answer], None]) -> None:
        """Any thread (the loop): publish `message`; `done` gets its `Published`, or the
        error that kept it from Redis, on the loop thread (through `post`)."""
        self._queue.put((message, done))

    def close(self) -> None:
        """Publish what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                answers = self._publisher.publish_batch([message for message, _ in batch])
            except Exception as exc:  # a bug, not Redis: each is answered, and the thread lives on
                log.exception("a batch of publishes failed")
                answers = [exc] * len(batch)
            self._post(lambda batch=batch, answers=answers: _answer(batch, answers))

    def _take(self) -> list[tuple[Publish, Callable[[Answer], None]]] | None:
        """The next batch: wait for one publish, then take what else is queued (up to the
        batch's bound); None once closed and drained."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # closing: this batch goes out, then the thread ends
                self._queue.put(None)
                break
            batch.append(item)
        return batch


def _answer(batch: list[tuple[Publish, Callable[[Answer], None]]], answers: list[Answer]) -> None:
    """A batch's answers on the loop, in one post: one wake-up a round trip, not one a message."""
    for (_, done), answer in zip(batch, answers, strict=True):
        done(answer)


class Sink(Protocol):
    """What the reader hands the loop: entries in stream order, and the bus's state."""

    def arrive(self, entries: list[FanoutItem]) -> None: ...

    def bus_state(self, reachable: bool, why: str) -> None: ...


def fanout_end(client: redis.Redis) -> bytes:
    """The fan-out stream's last id now (b"0-0" when empty): where a starting node's reader
    begins, read before it loads its windows, so nothing falls between the two."""
    newest = client.xrevrange(FANOUT, count=1)
    return newest[0][0] if newest else b"0-0"


class BusReader:
    """One thread that reads the fan-out stream from its last id and posts each batch to the
    loop. A failed read is retried with backoff from the same id: a Redis that went away and
    came back gives what was stored meanwhile, nothing lost, nothing twice."""

    def __init__(self, client: redis.Redis, post: Post, sink: Sink, after: bytes,
                 block_ms: int = READ_BLOCK_MS, tick: Callable[[redis.Redis], None] | None = None,
                 every: float = 0.0, consumed: int = 0) -> None:
        """`tick` (with this thread's client) runs every `every` seconds between reads: what
        it posts lands in stream order among the entries. `consumed`: the entries of the
        stream's history up to `after` (its `entries-added` then)."""
        self._client = client
        self._publisher = Publisher(client)
        self._tick, self._every = tick, every
        self._post, self._sink = post, sink
        self.last_id = after
        self.consumed = consumed  # this thread's: where it stands in the stream's history
        self._block_ms = block_ms
        self._stop = threading.Event()
        self._ahead = threading.Semaphore(READ_AHEAD)  # batches posted, not yet delivered
        self._thread = threading.Thread(target=self._run, name="bus-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop after the read in progress (at most `block_ms`)."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        delay, reachable = RETRY_FIRST, True
        next_tick = 0.0
        while not self._stop.is_set():
            try:
                # Only once a read succeeded again: what a tick posts comes after `bus_state`.
                if self._tick is not None and reachable and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self._every
                    self._tick(self._client)
                entries = self._publisher.read_fanout(self.last_id, READ_COUNT, self._block_ms)
            except redis.RedisError as exc:
                if reachable:
                    reachable = False
                    self._post(lambda why=str(exc): self._sink.bus_state(False, why))
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_CEILING)
                continue
            if not reachable:
                reachable, delay = True, RETRY_FIRST
                self._post(lambda: self._sink.bus_state(True, ""))
            if entries:
                while not self._ahead.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                self.last_id = entries[-1].id
                self.consumed += len(entries)
                self._post(lambda entries=entries: self._deliver(entries))

    def _deliver(self, entries: list) -> None:
        """Loop thread: a batch to the sink, and room for the reader to post another."""
        try:
            self._sink.arrive(entries)
        finally:
            self._ahead.release()

