"""Every open connection, and what the chat and the outbox ask of them (loop thread).

The chat's `Effects` (send, broadcast, subscribe, unsubscribe, close, submit, hold),
its journal (`commit`, the CSV files') and the outbox's `Port` (blocked,
dead, drained, slow consumer) land here: one owner for a connection's life from `add` to `drop`, so that
forgetting one is one method. The selectors loop (`chat_selectors.py`) reads,
accepts and keeps time; it asks this class to flush, reap and drop.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from netlab.chat.jobs import Job, Publish
from netlab.chat_core import Chat
from netlab.fairpool import FairPool
from netlab.logs import get_logger
from netlab.loop import jobs, web
from netlab.loop.connection_states import HANDSHAKES, ConnState
from netlab.loop.group_commit import Journals
from netlab.loop.outbox import Mark, Outbox, Output
from netlab.loop.transport import Connection, send
from netlab.store.opening import Store
from netlab.wire.websocket import WEBSOCKET

if TYPE_CHECKING:
    from netlab.bus.journals import BusJournals
    from netlab.bus.node import BusNode

log = get_logger("chat")

#: How long a closing connection may take to drain its last frames (the
#: `error`, `bye`, `kicked` or `shutdown` it was sent) before it is dropped.
CLOSE_GRACE = 2.0


class Connections:
    """Open connections by session id, their output, and the chat's requests of the loop."""

    def __init__(self, max_output: int, store: Store | BusNode, hash_pool: FairPool,
                 disk_pool: FairPool, store_failed: Callable[[], None]) -> None:
        """`store`: the data files, or (bus mode) the node of a bus, whose journals and jobs
        the chat then uses."""
        self.accounts = store.accounts
        self.bus = store if not isinstance(store, Store) else None
        self.chat: Chat  # set by the server once the chat exists: it is given these Effects
        self.conns: dict[int, Connection] = {}
        self.outbox = Outbox(max_output, send, self, time.monotonic)
        # Effects the outbox carries out as they are: its own methods, so that a message's
        # broadcast and an answer's send cost the chat one call, not two.
        self.send = self.outbox.send
        self.broadcast = self.outbox.broadcast
        self.subscribe = self.outbox.subscribe
        self.unsubscribe = self.outbox.unsubscribe
        if isinstance(store, Store):
            self.commit: Journals | BusJournals = Journals(store, self._staging, self._commit_failed)
            self._run: Callable[[Job], Any] = lambda job: jobs.run(job, self.accounts, self.commit)
        else:
            from netlab.bus import jobs as bus_jobs  # imports redis: bus mode only

            self.commit = store.journals
            self._run = functools.partial(bus_jobs.run, node=store)
        self.backlog: set[Connection] = set()  # frames left for the next pass (FRAMES_PER_PASS)
        self.writable: set[Output] = set()  # blocked ones whose socket has room again
        self._closing: set[Connection] = set()
        self._unsaved_at: Mark = {}  # where the logs ended before this pass's messages
        # Both pools take turns between client addresses: one address's thousand
        # registrations do not queue everyone else's login behind them.
        self._hash = hash_pool
        # History pages from disk: apart, so that no number of them can delay a login.
        self._disk = disk_pool
        self._store_failed = store_failed
        # For /metrics, by codec (the TCP port's, the web port's): counted at add and drop,
        # so a scrape reads them instead of walking every connection.
        self.opened: Counter = Counter()
        self.open: Counter = Counter()
        self.slow_consumers = 0

    def add(self, conn: Connection) -> None:
        self.conns[conn.sid] = conn
        self.opened[conn.out.codec] += 1
        self.open[conn.out.codec] += 1

    def handshake(self, conn: Connection) -> None:
        """One step of a TLS handshake; the welcome waits for its end."""
        failure = conn.handshake()
        if failure is not None:
            log.info("TLS handshake with %s failed: %s", conn.peer, failure)
            self.drop(conn, "TLS handshake failed")
        elif conn.state not in HANDSHAKES:
            self.outbox.start(conn.out)  # the welcome goes out now

    def close_deadlines(self) -> list[float]:
        return [c.close_by for c in self._closing] if self._closing else []

    # -- Effects: what the chat asks of the loop (send, broadcast, subscribe...: see __init__) --

    def close(self, sid: int) -> None:
        if (conn := self.conns.get(sid)) is not None and conn.out.codec is WEBSOCKET:
            web.goodbye(conn, self.outbox)  # its close frame follows what is queued
        out = self.outbox.close(sid)
        if out is None:
            return
        conn = self.conns[sid]
        conn.close_by = time.monotonic() + CLOSE_GRACE
        if conn.state is ConnState.HANDSHAKE:
            # The handshake is charged to the auth timeout: at its end no handshake has
            # come, so no goodbye can be sent, and there is nothing left for a grace to wait for.
            conn.close_by = min(conn.close_by, conn.handshake_by)
        self._closing.add(conn)
        conn.move("close")  # read again, to see the peer's close (and discard what it sends)

    def submit(self, sid: int, job: Job, done: Callable[[Any], None]) -> None:
        self.hold(sid, True)

        def finished(result: Any) -> None:
            if isinstance(result, Exception) and not (self.bus is not None
                                                      and isinstance(result, self.bus.unreachable)):
                log.error("background work failed: %r", result)  # the bus's loss is logged once, apart
            # Released first: `done` may submit the next job of the same request (a create
            # stores the room, then the owner's membership), which holds the session again.
            self.hold(sid, False)
            done(result)

        if isinstance(job, Publish) and self.bus is not None:
            return self.bus.publish(job, finished)  # the bus's writer thread, not a pool
        conn = self.conns.get(sid)  # gone, its job still runs (a registration is kept)
        pool = self._disk if jobs.on_disk(job) else self._hash
        pool.submit(conn.ip if conn is not None else "", lambda: self._run(job), finished)

    def hold(self, sid: int, held: bool) -> None:
        conn = self.conns.get(sid)
        if conn is None:
            return
        conn.move("hold" if held else "release")  # see _handle_frames
        if not held:
            self.backlog.add(conn)  # answer what it sent meanwhile

    def _staging(self) -> None:
        """The journal stages the first message of a commit: its broadcasts start here."""
        self._unsaved_at = self.outbox.mark()

    def _commit_failed(self) -> None:
        """The disk refused the staged messages: their broadcasts are taken back (nothing
        has been sent since they went in) and the server stops: a chat that cannot keep
        its promise of durability should not go on chatting."""
        self.outbox.take_back(self._unsaved_at)
        self._store_failed()

    def flush(self) -> None:
        """Everything pending goes out, as far as the sockets take it (Outbox.flush)."""
        writable, self.writable = self.writable, set()
        self.outbox.flush(writable)

    # -- the outbox's Port: what became of the bytes ------------------------------------

    def blocked(self, out: Output, blocked: bool) -> None:
        conn = self.conns.get(out.sid)
        if conn is not None:
            conn.update_interest()

    def dead(self, out: Output, reason: str) -> None:
        conn = self.conns.get(out.sid)
        if conn is not None:
            self.drop(conn, reason)

    def drained(self, out: Output) -> None:
        """All sent: FIN after it. Keep reading until the peer closes (or the grace ends)
        so its late bytes cannot turn our close into a reset."""
        with contextlib.suppress(OSError):
            out.sink.shutdown(socket.SHUT_WR)

    def slow_consumer(self, sid: int) -> None:
        self.slow_consumers += 1
        self.chat.slow_consumer(sid)

    def reap(self, everyone: bool) -> None:
        """Drop closing connections whose grace ran out; every one if `everyone` (a shutdown's
        grace ran out)."""
        if everyone:
            doomed = list(self.conns.values())
        elif self._closing:
            now = time.monotonic()
            doomed = [c for c in self._closing if now >= c.close_by]
        else:
            return  # the common pass: nobody closing, no clock read
        for conn in doomed:
            self.drop(conn, None)

    def drop(self, conn: Connection, reason: str | None) -> None:
        """Forget a connection now; `reason` None means the chat already knows."""
        if self.conns.pop(conn.sid, None) is None:
            return
        conn.close()
        self.open[conn.out.codec] -= 1
        self.backlog.discard(conn)
        self.writable.discard(conn.out)
        self._closing.discard(conn)
        self.outbox.forget(conn.out)
        if reason is not None:
            self.chat.disconnect(conn.sid, reason)
