"""The chat's event loop: one `selectors` loop in a dedicated listener thread.

This module only moves bytes and keeps time. It accepts, reads, feeds each
connection's decoder and hands frames to `chat_core.Chat`. What the chat asks
of the loop (its `Effects`) and each connection's life from accept to drop are
`loop/connections.py`'s; what each connection is still to be sent, and who is
cut for not reading it, `loop/outbox.py`'s; one socket, `loop/transport.py`'s.

One message, end to end:

    readable -> recv -> decoder.feed -> Chat.receive -> journal.stage
    (history record staged) and Effects.broadcast (the payload framed once
    per codec, appended to the outbox's shared log) -> end of the pass: the
    journal commits, one write() of every staged record -> Outbox.flush: each
    connection sends what it has not seen of the log, one send per pass.

A pass whose fan-out would cost more sends (one per reader of each room that
grew) than it carries messages looks at the selector once more, without
waiting, before it commits: what arrived meanwhile then shares those sends
instead of paying for a pass of its own. A pass that carries more messages
than it has readers does not: its sends are shared enough, and what arrives
next is better left to the next pass, which then runs while the clients read
this one's (with 400 messages in flight, looking again every pass made the
server and its clients take turns, and halved the throughput).

Other threads never touch this state: the console and the worker pool post
callables to a queue and write one byte to a wake-up socket pair.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from netlab import wire as p
from netlab.chat_core import Chat, ChatConfig
from netlab.crypto import dummy_hash
from netlab.fairpool import FairPool
from netlab.logs import get_logger
from netlab.loop.calls import Calls
from netlab.loop.connection_states import ANSWERING, HANDSHAKES, ConnState
from netlab.loop.connections import Connections
from netlab.loop.metrics import PASS_BUCKETS, Histogram, Metrics
from netlab.loop.operator import OperatorCalls
from netlab.loop.transport import Connection
from netlab.loop.web import WebPort, after_feed
from netlab.netutil import ACCEPT_BACKOFF, Acceptor, format_address, tune_chat_socket
from netlab.store.opening import Store

if TYPE_CHECKING:
    from netlab.bus.node import BusNode
from netlab.wire.websocket import WEBSOCKET

log = get_logger("chat")

#: Frames answered for one connection at one look at the selector (two in a thin pass).
#: The rest wait, with the connection's reading paused, so that a client pipelining
#: thousands of requests holds up nobody but itself.
FRAMES_PER_PASS = 16
#: The loop's share of CLI.md's 2 s shutdown promise.
SHUTDOWN_GRACE = 1.2



class ChatServer(OperatorCalls):
    """The chat server: listener thread, worker pool, group-commit thread."""

    kind = "chat"

    def __init__(self, listener: socket.socket, config: ChatConfig, store: Store | BusNode,
                 tls: ssl.SSLContext | None = None, web: WebPort | None = None) -> None:
        """`listener` comes bound already: a port in use must stop start-up before
        any data file is opened. `store`: the data files, or the node of a bus (`--bus`)."""
        self.tls = tls
        self.config = config
        self.accounts = store.accounts
        self.store = store
        self.listener = listener
        self.address = format_address(self.listener.getsockname())
        self._tag = store.accounts.vault.address_tag  # the log's names of client addresses
        dummy_hash()  # now: computed at the first unknown name, it would make that one slower
        self._calls = Calls()
        self.hash_pool = FairPool(max(2, os.cpu_count() or 2), "chat-hash", self._calls.post)
        self._pools = (self.hash_pool, FairPool(1, "chat-disk", self._calls.post))
        self.cx = Connections(config.max_output, store, *self._pools, self._store_failed)
        self.chat = self.cx.chat = Chat(config, store.accounts, self.cx.commit, self.cx, store.snapshot)
        self.outbox, self.commit, self.conns = self.cx.outbox, self.cx.commit, self.cx.conns
        self.selector = selectors.DefaultSelector()
        self._next_sid = 1
        self._stopping = False
        self._stop_by = 0.0
        self._stopped = threading.Event()
        self._started = time.monotonic()
        self.exit_status = 0
        self._incoming = Acceptor(listener, log)
        self.web = web  # the web port: HTTP and WebSocket sessions on this same loop
        self._listeners = {listener: self._incoming}
        if web is not None:
            self._listeners[web.listener] = Acceptor(web.listener, log)
        self._accept_again = 0.0  # monotonic time to resume accepting; 0: accepting
        self.bytes_in = 0
        self.pass_seconds = Histogram(PASS_BUCKETS)  # the work of each pass, not its wait in select
        if web is not None:  # /healthz and /metrics answer from this loop's state; a store that
            # refuses a write stops the server (`_store_failed`), one that fails an fsync does not
            figures = Metrics(self).exposition
            web.site = dataclasses.replace(
                web.site, healthy=lambda: not (self._stopping or self.commit.sync_failed), metrics=figures,
                metrics_allow=config.metrics_allow)
        self._thread = threading.Thread(target=self._run, name="chat-loop")

    # -- the Server interface (any thread) -----------------------------------------

    def start(self) -> None:
        self.commit.start()
        if self.cx.bus is not None:
            self.cx.bus.start(self.chat, self._calls.post, self._store_failed)
        self._thread.start()

    def stop(self, reason: str) -> None:
        self.call_soon(lambda: self._begin_stop(reason))

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def status(self) -> dict[str, str]:
        return self.call(self._status)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread; safe from any thread."""
        self._calls.post(fn)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run `fn` on the loop thread and return its result."""
        if self._stopped.is_set():
            raise RuntimeError("the chat server has stopped")
        return self._calls.call(fn, timeout)

    # -- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        self._listen()
        self.selector.register(self._calls.wake_r, selectors.EVENT_READ, "wake")
        try:
            auth_deadline = None
            while not (self._stopping and not self.conns):
                backlog, self.cx.backlog = self.cx.backlog, set()
                timeout = 0.0 if backlog else self._timeout(auth_deadline)
                events_ready = self.selector.select(timeout)
                pass_began = time.monotonic()
                self.chat.advance(pass_began, time.time())
                self._serve(events_ready)
                for conn in backlog:
                    if conn.sid in self.conns:
                        self._handle_frames(conn)
                if self.outbox.thin:  # see the module's docstring: the pass's second look
                    self._serve(self.selector.select(0))
                auth_deadline = self.chat.expire(self.chat.now)
                if self._accept_again and time.monotonic() >= self._accept_again:
                    self._accept_again = 0.0
                    self._listen()
                self.commit.commit()  # this pass's messages are on disk before any byte is sent
                self.cx.flush()
                self.cx.reap(self._stopping and time.monotonic() >= self._stop_by)
                self.pass_seconds.observe(time.monotonic() - pass_began)
        except Exception:
            log.exception("chat loop crashed")
            self.exit_status = 1
        finally:
            self._close_everything()

    def _serve(self, events_ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        """Act on what the selector reported: accept, run posted calls, read, note writable."""
        for key, events in events_ready:
            if key.data == "accept":
                if not self._stopping:  # a stop in this same batch closed the listener
                    self._accept(self._listeners[key.fileobj])
            elif key.data == "wake":
                self._calls.run()
            elif key.data.state in HANDSHAKES:
                self.cx.handshake(key.data)
            else:
                if events & selectors.EVENT_READ:
                    self._read(key.data)
                if events & selectors.EVENT_WRITE:
                    self.cx.writable.add(key.data.out)

    def _timeout(self, auth_deadline: float | None) -> float | None:
        """Sleep until the next fan-out pass, auth deadline, closing grace or shutdown deadline."""
        deadlines = self.cx.close_deadlines()
        if self._accept_again:
            deadlines.append(self._accept_again)
        if (presence_due := self.outbox.next_presence) is not None:
            deadlines.append(presence_due)
        if auth_deadline is not None:
            deadlines.append(auth_deadline)
        if self._stopping:
            deadlines.append(self._stop_by)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _listen(self) -> None:
        for listener in self._listeners:
            self.selector.register(listener, selectors.EVENT_READ, "accept")

    def _accept(self, incoming: Acceptor) -> None:
        web = self.web if incoming.listener is not self.listener else None
        for _ in range(256):  # a burst of connects, bounded so readers are not starved
            accepted = incoming.next()
            if accepted is None:
                if incoming.starved:  # serve the others; accept again a little later
                    for listener in self._listeners:
                        self.selector.unregister(listener)
                    self._accept_again = time.monotonic() + ACCEPT_BACKOFF
                return
            sock, addr = accepted
            sock.setblocking(False)
            tune_chat_socket(sock)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            sid, self._next_sid = self._next_sid, self._next_sid + 1
            codec = p.LENGTH_PREFIX if web is None else WEBSOCKET
            out = self.outbox.open(sid, sock, codec, ready=self.tls is None)
            conn = Connection(self.selector, sid, sock, addr, self._tag, self.config.max_frame, out)
            conn.handshake_by = time.monotonic() + self.config.auth_timeout
            self.cx.add(conn)
            # The auth timeout runs from here, so a handshake that never ends is charged to it.
            if web is None:
                self.chat.connect(sid, conn.peer, conn.ip, self.chat.now)
            else:
                web.connect(conn, self.chat, self.config.max_frame)

    def _read(self, conn: Connection) -> None:
        data = conn.receive()
        if isinstance(data, str):
            return self.cx.drop(conn, data)
        if data is None:
            return
        self.bytes_in += len(data)
        if conn.state is not ConnState.CLOSING:  # else read and discarded: no reset of what we sent
            conn.decoder.feed(data)
            if conn.out.codec is WEBSOCKET and (ended := after_feed(conn, self.outbox, self.chat)):
                self.cx.close(conn.sid)
                return self.chat.disconnect(conn.sid, ended)
            self._handle_frames(conn)

    def _handle_frames(self, conn: Connection) -> None:
        """Answer received frames in order: FRAMES_PER_PASS at most, none while the session is
        held (a hash, a disk read or a throttle of its own runs), none past the output limit.

        While frames wait (WAITING, HELD), reading pauses: the client's TCP window holds it back,
        and the decoder holds one `recv` of them at most. The common case moves no state.
        """
        out, next_frame, receive = conn.out, conn.decoder.next_frame, self.chat.receive
        try:
            for _ in range(FRAMES_PER_PASS):
                if conn.state not in ANSWERING or out.over_limit:
                    break
                frame = next_frame()
                if frame is None:
                    if conn.state is ConnState.WAITING:
                        conn.move("caught_up")
                    return
                receive(conn.sid, frame)
            else:
                self.cx.backlog.add(conn)  # the cap: go on next pass
        except p.ProtocolError as exc:
            return self.chat.protocol_error(conn.sid, exc)
        if conn.state is ConnState.OPEN:
            conn.move("frames_wait")

    # -- stopping ----------------------------------------------------------------------

    def _store_failed(self, reason: str = "the server cannot store messages") -> None:
        """The store cannot be trusted (history.csv refused a pass's messages; a node fell
        behind its bus): the chat stops, exit status 1."""
        self.exit_status = 1
        self._begin_stop(reason)

    def _begin_stop(self, reason: str) -> None:
        if self._stopping:
            return
        log.info("stopping: %s", reason)
        self._stopping = True
        self._stop_by = time.monotonic() + SHUTDOWN_GRACE
        self._accept_again = 0.0
        for listener in self._listeners:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(listener)
            listener.close()
        self.chat.shutdown(reason)

    def _close_everything(self) -> None:
        """Release everything, whatever state a crash left behind; then report stopped."""
        for conn in list(self.conns.values()):
            with contextlib.suppress(OSError):
                conn.sock.close()
        for pool in self._pools:
            pool.shutdown()
        try:
            self.commit.close()
            if self.cx.bus is not None:
                self.cx.bus.close()
        except (OSError, ValueError):
            log.exception("history could not be flushed")
            self.exit_status = 1
        self.selector.close()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.close()
        self._calls.close()
        log.info("stopped")
        self._stopped.set()
