"""The chat's event loop: one `selectors` loop in a dedicated listener thread.

This module only moves bytes. It accepts, reads, feeds `FrameDecoder`, hands
frames to `chat_core.Chat`, and carries out what the chat decides (the
`Effects` below). It is the only code that touches a client socket.

One message, end to end:

    readable -> recv -> decoder.feed -> Chat.receive -> Effects.persist
    (history record queued) and Effects.broadcast (the one encoded frame
    appended to the shared BroadcastLog) -> end of the pass: one write() of
    every queued history record -> each session sends what it has not seen
    of the log, in one send per session per pass.

Fan-out. Every recipient of a broadcast gets the very same bytes, so they
are appended once to a shared log that each session reads through its own
cursor; the per-message cost does not grow with the number of recipients.
Private frames (answers, errors) wait in a small per-session queue, each
tagged with the log position at which it was queued, so a session sees
frames in exactly the order the chat produced them.

Output bounds (after Redis's client output buffer limits): a session's
pending output is what it has not read of the log plus its private queue.
Past `max_output` it is cut as a slow consumer; the log is trimmed to the
slowest remaining reader, so the log never holds much more than max_output.

Other threads never touch this state: the console and the worker pool post
callables to a queue and write one byte to a wake-up socket pair.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from netlab import wire as p
from netlab.chat_core import Chat, ChatConfig
from netlab.fairpool import FairPool
from netlab.logs import get_logger
from netlab.netutil import ACCEPT_BACKOFF, Acceptor, client_ip, enable_keepalive, format_address
from netlab.store import Accounts, History, Record

log = get_logger("chat")

RECV_SIZE = 256 * 1024
#: Frames answered for one connection in one loop pass. The rest wait, with the
#: connection's reading paused, so that a client pipelining thousands of requests
#: holds up nobody but itself.
FRAMES_PER_PASS = 16
#: Trim consumed bytes off the shared log once this much (or --max-output) has piled up.
TRIM_THRESHOLD = 1024 * 1024
#: How long a closing connection may take to drain its last frames (the
#: `error`, `bye`, `kicked` or `shutdown` it was sent) before it is dropped.
CLOSE_GRACE = 2.0
#: A pass over every reader for presence alone (join, leave) waits at least
#: PRESENCE_DELAY seconds and this many times as long as the last pass took.
PRESENCE_DELAY = 0.02
PRESENCE_PACING = 4.0
#: Longest time between a message reaching history.csv and its fsync.
SYNC_INTERVAL = 0.05
#: The loop's share of CLI.md's 2 s shutdown promise.
SHUTDOWN_GRACE = 1.2


def _send(sock: socket.socket, chunk: memoryview) -> int | str:
    """`send` that does not raise: the bytes sent, or why the connection is dead.

    Only the reason leaves this function, never the exception: its traceback
    would keep `chunk` (a view of the broadcast log) alive, and while a view
    lives the log cannot grow; the `leave` of the dead session must append to it.
    """
    try:
        return sock.send(chunk)
    except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        return 0
    except OSError as exc:
        return f"error: {exc.strerror or exc}"


def _frame_end(frames: bytearray, boundary: int, position: int) -> int:
    """The end of the frame holding `position` in `frames`, walking headers from `boundary`,
    a frame start."""
    while boundary <= position:
        (length,) = p.HEADER.unpack_from(frames, boundary)
        boundary += p.HEADER.size + length
    return boundary


class BroadcastLog:
    """Encoded broadcast frames, shared by every session, addressed by absolute position."""

    __slots__ = ("data", "base")

    def __init__(self) -> None:
        self.data = bytearray()
        self.base = 0  # absolute position of data[0]

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def append(self, frame: bytes) -> None:
        self.data += frame

    def view(self, start: int, stop: int) -> memoryview:
        return memoryview(self.data)[start - self.base:stop - self.base]

    def frame_end(self, boundary: int, position: int) -> int:
        """The end of the frame holding `position`, walking headers from a known frame start."""
        return self.base + _frame_end(self.data, boundary - self.base, position - self.base)

    def trim(self, keep_from: int) -> None:
        del self.data[:keep_from - self.base]
        self.base = keep_from


class Connection:
    """One client socket with its decoder and output state."""

    __slots__ = ("sid", "sock", "peer", "ip", "decoder", "subscribed", "cursor", "boundary",
                 "private", "private_bytes", "sent_head", "log_stop", "closing", "close_by",
                 "blocked", "paused", "held", "events", "handshaking", "handshake_by")

    def __init__(self, sid: int, sock: socket.socket, address: tuple, max_frame: int) -> None:
        self.sid = sid
        self.sock = sock
        self.peer = format_address(address)
        self.ip = client_ip(address)  # whose connections these are: limits, throttles, pool turns
        self.decoder = p.FrameDecoder(max_frame)
        self.subscribed = False
        self.cursor = 0     # next log byte to send
        self.boundary = 0   # a frame start <= cursor (where a cut frame can be finished from)
        #: (log position when queued, frames): frames queued at one position share a
        #: bytearray, so a flood of small answers costs its bytes, not an object each.
        self.private: deque[tuple[int, bytearray]] = deque()
        self.private_bytes = 0
        self.sent_head = 0  # bytes of private[0] already sent
        self.log_stop: int | None = None  # closing: send the log only up to here
        self.closing = False
        self.close_by = 0.0
        self.blocked = False  # the socket's buffer is full: wait for EVENT_WRITE
        self.paused = False  # not reading: received frames wait to be answered
        self.held = False  # its next requests wait (Effects.hold): a hash, a disk read, a throttle
        self.events = selectors.EVENT_READ  # the selector interest registered now (0: none)
        self.handshaking = False  # TLS: nothing is sent or read until the handshake is done
        self.handshake_by = 0.0  # TLS: monotonic time its auth timeout ends an unfinished handshake


class ChatServer:
    """The chat server: listener thread, worker pool, group-commit thread."""

    kind = "chat"

    def __init__(self, listener: socket.socket, config: ChatConfig, accounts: Accounts,
                 history: History, tls: ssl.SSLContext | None = None) -> None:
        """`listener` comes bound already: a port in use must stop start-up before
        any data file is opened."""
        self.tls = tls
        self.config = config
        self.accounts = accounts
        self.history = history
        self.listener = listener
        self.address = format_address(self.listener.getsockname())
        self.chat = Chat(config, accounts, history, self)
        self.log = BroadcastLog()
        self.conns: dict[int, Connection] = {}
        self.selector = selectors.DefaultSelector()
        self._next_sid = 1
        self._dirty: set[Connection] = set()  # private output queued this pass
        self._closing: set[Connection] = set()
        self._over_limit: set[Connection] = set()  # past max_output; cut at the next flush
        #: Subscribed sessions that are not closing: the fan-out hot path's list.
        self._readers: dict[int, Connection] = {}
        self._writable: set[Connection] = set()  # blocked ones whose socket has room again
        self._backlog: set[Connection] = set()  # frames left for the next pass (FRAMES_PER_PASS)
        self._log_grew = False
        self._presence_waiting = False  # presence in the log that no pass has carried yet
        self._next_presence = 0.0  # monotonic time before which presence alone starts no pass
        self._unsaved: list[Record] = []
        self._unsaved_at = 0
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Both pools take turns between client addresses: one address's thousand
        # registrations do not queue everyone else's login behind them.
        self._pool = FairPool(max(2, os.cpu_count() or 2), "chat-hash")
        # History pages from disk: apart, so that no number of them can delay a login.
        self._disk = FairPool(1, "chat-disk")
        self._stopping = False
        self._stop_by = 0.0
        self._stopped = threading.Event()
        self._sync_wanted = threading.Event()
        self._sync_pause = threading.Event()  # set at shutdown: no more pauses
        self._sync_done = False
        self._started = time.monotonic()
        self.exit_status = 0
        self._accepted = 0
        self._incoming = Acceptor(listener, log)
        self._accept_again = 0.0  # monotonic time to resume accepting; 0: accepting
        self._bytes_in = 0
        self._bytes_out = 0
        self._thread = threading.Thread(target=self._run, name="chat-loop")
        self._syncer = threading.Thread(target=self._group_commit, name="chat-fsync", daemon=True)

    # -- the Server interface (any thread) -----------------------------------------

    def start(self) -> None:
        self._syncer.start()
        self._thread.start()

    def stop(self, reason: str) -> None:
        self.call_soon(lambda: self._begin_stop(reason))

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def status(self) -> dict[str, str]:
        return self.call(self._status)

    def users(self) -> list[tuple[str, int, list[str]]]:
        return self.call(self.chat.users_table)

    def kick(self, name: str) -> int:
        return self.call(lambda: self.chat.kick(name))

    def say(self, text: str) -> int:
        return self.call(lambda: self.chat.notice(text))

    def clear_accounts(self) -> tuple[int, int]:
        # File work in the caller's thread; Accounts is thread-safe and the
        # loop only reads it.
        removed = self.accounts.clear()
        if not removed:
            return 0, 0
        ended = self.call(self.chat.end_sessions_without_account)
        log.info("clients.csv cleared by the operator: %d account(s) removed, %d session(s) ended",
                 removed, ended)
        return removed, ended

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread; safe from any thread."""
        self._calls.put(fn)
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run `fn` on the loop thread and return its result."""
        if self._stopped.is_set():
            raise RuntimeError("the chat server has stopped")
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:  # handed to the caller
                future.set_exception(exc)

        self.call_soon(run)
        return future.result(timeout)

    # -- Effects: what the chat asks of the loop (loop thread) -----------------------

    def send(self, sid: int, payload: p.Payload) -> None:
        conn = self.conns.get(sid)
        if conn is None or conn.closing:
            return
        data = p.LENGTH_PREFIX.frame(payload)
        if conn.private and conn.private[-1][0] == self.log.end:
            conn.private[-1][1].extend(data)  # no view of it lives between sends
        else:
            conn.private.append((self.log.end, bytearray(data)))
        conn.private_bytes += len(data)
        self._dirty.add(conn)
        if self._pending(conn) > self.config.max_output:
            # Cut later, in _flush: the chat is in the middle of a decision now.
            self._over_limit.add(conn)

    def broadcast(self, payload: p.Payload, *, urgent: bool = True) -> None:
        self.log.append(p.LENGTH_PREFIX.frame(payload))  # once, whatever the number of readers
        if urgent:
            self._log_grew = True
        else:
            self._presence_waiting = True

    def subscribe(self, sid: int) -> None:
        conn = self.conns[sid]
        conn.subscribed = True
        conn.cursor = conn.boundary = self.log.end
        self._readers[sid] = conn

    def persist(self, record: Record) -> None:
        if not self._unsaved:
            self._unsaved_at = self.log.end  # where this pass's first message goes
        self._unsaved.append(record)

    def close(self, sid: int) -> None:
        conn = self.conns.get(sid)
        if conn is None or conn.closing:
            return
        conn.closing = True
        conn.close_by = time.monotonic() + CLOSE_GRACE
        if conn.handshaking:
            # The handshake is charged to the auth timeout: at its end no handshake has
            # come, so no goodbye can be sent, and there is nothing left for a grace to wait for.
            conn.close_by = min(conn.close_by, conn.handshake_by)
        conn.log_stop = self.log.end
        self._readers.pop(sid, None)
        self._closing.add(conn)
        self._dirty.add(conn)
        self._pause(conn, False)  # read again, to see the peer's close (and discard what it sends)

    def submit(self, sid: int, work: Callable[[], Any], done: Callable[[Any], None], *,
               disk: bool = False) -> None:
        self.hold(sid, True)
        pool = self._disk if disk else self._pool

        def finished(future: Future) -> None:
            if future.cancelled():
                return  # stopping
            failure = future.exception()
            if failure is not None:
                log.error("background work failed: %r", failure)
            result = failure if failure is not None else future.result()
            self.call_soon(lambda: self._job_done(pool, sid, done, result))

        conn = self.conns.get(sid)  # gone, its job still runs (a registration is kept)
        pool.submit(conn.ip if conn is not None else "", work, finished)

    def _job_done(self, pool: FairPool, sid: int, done: Callable[[Any], None], result: Any) -> None:
        pool.job_finished()
        done(result)
        self.hold(sid, False)

    def hold(self, sid: int, held: bool) -> None:
        conn = self.conns.get(sid)
        if conn is None:
            return
        conn.held = held  # see _handle_frames
        if not held:
            self._backlog.add(conn)  # answer what it sent meanwhile

    # -- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            auth_deadline = None
            while not (self._stopping and not self.conns):
                backlog, self._backlog = self._backlog, set()
                timeout = 0.0 if backlog else self._timeout(auth_deadline)
                for key, events in self.selector.select(timeout):
                    if key.data == "accept":
                        if not self._stopping:  # a stop in this same batch closed the listener
                            self._accept()
                    elif key.data == "wake":
                        self._run_calls()
                    elif key.data.handshaking:
                        self._handshake(key.data)
                    else:
                        if events & selectors.EVENT_READ:
                            self._read(key.data)
                        if events & selectors.EVENT_WRITE:
                            self._writable.add(key.data)
                for conn in backlog:
                    if conn.sid in self.conns:
                        self._handle_frames(conn)
                auth_deadline = self.chat.expire(time.time())
                if self._accept_again and time.monotonic() >= self._accept_again:
                    self._accept_again = 0.0
                    self.selector.register(self.listener, selectors.EVENT_READ, "accept")
                self.save()
                self._flush()
                self._reap()
        except Exception:
            log.exception("chat loop crashed")
            self.exit_status = 1
        finally:
            self._close_everything()

    def _timeout(self, auth_deadline: float | None) -> float | None:
        """Sleep until the next fan-out pass, auth deadline, closing grace or shutdown deadline."""
        deadlines = [c.close_by for c in self._closing]
        if self._accept_again:
            deadlines.append(self._accept_again)
        if self._presence_waiting:
            deadlines.append(self._next_presence)
        if auth_deadline is not None:
            deadlines.append(time.monotonic() + auth_deadline - time.time())
        if self._stopping:
            deadlines.append(self._stop_by)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _run_calls(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        while True:
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                return
            fn()

    def _accept(self) -> None:
        for _ in range(256):  # a burst of connects, bounded so readers are not starved
            accepted = self._incoming.next()
            if accepted is None:
                if self._incoming.starved:  # serve the others; accept again a little later
                    self.selector.unregister(self.listener)
                    self._accept_again = time.monotonic() + ACCEPT_BACKOFF
                return
            sock, addr = accepted
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            enable_keepalive(sock)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            sid, self._next_sid = self._next_sid, self._next_sid + 1
            conn = Connection(sid, sock, addr, self.config.max_frame)
            conn.handshaking = self.tls is not None
            conn.handshake_by = time.monotonic() + self.config.auth_timeout
            self.conns[sid] = conn
            self._accepted += 1
            self.selector.register(sock, selectors.EVENT_READ, conn)
            # The auth timeout runs from here, so a handshake that never ends is charged to it.
            self.chat.connect(sid, conn.peer, conn.ip, time.time())

    def _handshake(self, conn: Connection) -> None:
        """One non-blocking step of a TLS handshake; the welcome waits for its end."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self._interest(conn, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            return self._interest(conn, selectors.EVENT_WRITE)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            log.info("TLS handshake with %s failed: %s", conn.peer, reason)
            return self._drop(conn, "TLS handshake failed")
        conn.handshaking = False
        self._interest(conn, selectors.EVENT_READ)
        self._dirty.add(conn)

    def _interest(self, conn: Connection, events: int) -> None:
        """Register the events wanted; none at all means out of the selector."""
        if conn.events == events:
            return
        if not conn.events:
            self.selector.register(conn.sock, events, conn)
        elif not events:
            self.selector.unregister(conn.sock)
        else:
            self.selector.modify(conn.sock, events, conn)
        conn.events = events

    def _update_interest(self, conn: Connection) -> None:
        """Read unless paused; wait for room only while the socket's buffer is full."""
        self._interest(conn, (0 if conn.paused else selectors.EVENT_READ)
                       | (selectors.EVENT_WRITE if conn.blocked else 0))

    def _read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
            # TLS: bytes already decrypted inside the SSL object raise no event.
            while self.tls is not None and (waiting := conn.sock.pending()):
                data += conn.sock.recv(waiting)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            return self._drop(conn, f"error: {exc.strerror or exc}")
        if not data:
            return self._drop(conn, "closed by peer")
        self._bytes_in += len(data)
        if conn.closing:
            return  # read and discarded, so closing does not reset what we sent
        conn.decoder.feed(data)
        self._handle_frames(conn)

    def _handle_frames(self, conn: Connection) -> None:
        """Answer received frames in order: FRAMES_PER_PASS at most, none while the
        session is held (a hash, a disk read or a throttle of its own runs), none past the
        output limit.

        While frames wait, reading pauses: the client's own TCP window holds it back,
        and the decoder never holds more than one `recv` of them.
        """
        try:
            for _ in range(FRAMES_PER_PASS):
                if conn.closing or conn.held or conn in self._over_limit:
                    break
                frame = conn.decoder.next_frame()
                if frame is None:
                    return self._pause(conn, False)
                self.chat.receive(conn.sid, frame)
            else:
                self._backlog.add(conn)  # the cap: go on next pass
        except p.ProtocolError as exc:
            return self.chat.protocol_error(conn.sid, exc)
        if not conn.closing:
            self._pause(conn, True)

    def _pause(self, conn: Connection, paused: bool) -> None:
        """Stop (or resume) reading the connection."""
        if conn.paused != paused:
            conn.paused = paused
            self._update_interest(conn)

    def save(self) -> None:
        """Write this pass's messages to history before anything is sent.

        If the disk refuses them, they are taken back out of the broadcast log
        (nothing has been sent since they went in) and the server stops: a chat
        that cannot keep its promise of durability should not go on chatting.
        """
        if self._unsaved:
            try:
                self.history.append(self._unsaved)
            except (OSError, ValueError) as exc:
                log.critical("history.csv cannot be written (%s): stopping", exc)
                del self.log.data[self._unsaved_at - self.log.base:]
                self._unsaved = []
                self.exit_status = 1
                self._begin_stop("the server cannot store messages")
                return
            self._unsaved = []
            if not self._sync_wanted.is_set():
                self._sync_wanted.set()

    def _flush(self) -> None:
        """Send pending output: new broadcasts to every reader, then everything else.

        A pass over every reader costs a `send` each. Messages go at once; a pass
        for presence alone waits until PRESENCE_PACING times the last pass has
        gone by (or a message takes it along): in a login storm, joins share
        passes instead of costing N sends each to a room of N.
        """
        over, self._over_limit = self._over_limit, set()
        for conn in over:
            if conn.sid in self.conns and not conn.closing:
                self._cut_slow_consumer(conn)
        writable = self._writable
        others = self._dirty | writable
        self._dirty, self._writable = set(), set()
        now = time.monotonic()
        if self._log_grew or (self._presence_waiting and now >= self._next_presence):
            self._log_grew = self._presence_waiting = False
            # A reader over max_output is at least that far from the log's end, so
            # looking once the log is that long finds every one.
            if len(self.log.data) > min(TRIM_THRESHOLD, self.config.max_output):
                self._trim()
            others |= self._send_broadcasts()
            done = time.monotonic()
            self._next_presence = done + max(PRESENCE_DELAY, (done - now) * PRESENCE_PACING)
        for conn in others:
            if conn.sid in self.conns and not conn.handshaking and (not conn.blocked or conn in writable):
                self._write(conn)

    def _send_broadcasts(self) -> set[Connection]:
        """The fan-out hot path: one `send` a reader carries every broadcast it has not seen.

        Readers with private frames queued or a full socket take the general path
        (`_write`, which keeps their order); they are returned.
        """
        others, failed = set(), []
        base, end = self.log.base, self.log.end
        bytes_out = 0
        with memoryview(self.log.data) as log:
            # Readers that kept up share a cursor, and so one slice of the log.
            cursor, unseen = -1, log[:0]
            for conn in self._readers.values():
                if conn.private or conn.blocked:
                    others.add(conn)
                    continue
                if conn.cursor != cursor:
                    cursor, unseen = conn.cursor, log[conn.cursor - base:]
                sent = _send(conn.sock, unseen)
                if isinstance(sent, str):
                    failed.append((conn, sent))
                    continue
                bytes_out += sent
                conn.cursor += sent
                if conn.cursor == end:
                    conn.boundary = end
                else:
                    self._block(conn, True)
            del unseen  # a view: the log cannot grow while one lives
        self._bytes_out += bytes_out
        for conn, reason in failed:  # after the view is released: a leave grows the log
            self._drop(conn, reason)
        return others

    def _write(self, conn: Connection) -> None:
        """Send as much as the socket takes, in order; register for writability if it fills."""
        while True:
            chunk, from_log = self._next_chunk(conn)
            if chunk is None:
                break
            sent = _send(conn.sock, chunk)
            chunk.release()
            if isinstance(sent, str):
                return self._drop(conn, sent)
            self._bytes_out += sent
            complete = self._advance(conn, sent, from_log)
            if not complete:
                self._block(conn, True)
                return
        self._block(conn, False)
        if conn.closing:
            # All sent: FIN after it. Keep reading until the peer closes (or the
            # grace ends) so its late bytes cannot turn our close into a reset.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)

    def _next_chunk(self, conn: Connection) -> tuple[memoryview | None, bool]:
        log_end = self.log.end if conn.subscribed else conn.cursor
        if conn.log_stop is not None:
            log_end = min(log_end, conn.log_stop)
        if conn.private:
            position, frame = conn.private[0]
            if position <= conn.cursor or not conn.subscribed:
                return memoryview(frame)[conn.sent_head:], False
            log_end = min(log_end, position)
        if conn.cursor < log_end:
            return self.log.view(conn.cursor, log_end), True
        return None, False

    def _advance(self, conn: Connection, sent: int, from_log: bool) -> bool:
        """Account for `sent` bytes; True when the whole chunk went."""
        if from_log:
            conn.cursor += sent
            limit = self.log.end if conn.log_stop is None else conn.log_stop
            if conn.private:
                limit = min(limit, conn.private[0][0])
            if conn.cursor >= limit:
                conn.boundary = conn.cursor
                return True
            return False
        frame = conn.private[0][1]
        conn.sent_head += sent
        if conn.sent_head < len(frame):
            return False
        conn.private.popleft()
        conn.private_bytes -= len(frame)
        conn.sent_head = 0
        return True

    def _block(self, conn: Connection, blocked: bool) -> None:
        conn.blocked = blocked
        self._update_interest(conn)

    def _pending(self, conn: Connection) -> int:
        unread = self.log.end - conn.cursor if conn.subscribed else 0
        return unread + conn.private_bytes - conn.sent_head

    def _trim(self) -> None:
        """Cut readers too far behind, then drop what every reader has sent."""
        for conn in [c for c in self.conns.values() if c.subscribed and not c.closing]:
            if self._pending(conn) > self.config.max_output:
                self._cut_slow_consumer(conn)
        starts = [c.boundary for c in self.conns.values() if c.subscribed]
        self.log.trim(min(starts, default=self.log.end))

    def _cut_slow_consumer(self, conn: Connection) -> None:
        """Drop its backlog; it gets the rest of the frame it is in, then `slow_consumer`."""
        rest = bytearray()
        if conn.sent_head:
            frames = conn.private[0][1]
            rest = frames[conn.sent_head:_frame_end(frames, 0, conn.sent_head)]
        elif conn.subscribed and conn.cursor > conn.boundary:
            with self.log.view(conn.cursor, self.log.frame_end(conn.boundary, conn.cursor)) as view:
                rest = bytearray(view)
        conn.private.clear()
        conn.private_bytes = conn.sent_head = 0
        conn.subscribed = False
        self._readers.pop(conn.sid, None)
        self.chat.slow_consumer(conn.sid)
        if rest:
            conn.private.appendleft((0, rest))
            conn.private_bytes += len(rest)

    def _reap(self) -> None:
        """Drop closing connections whose grace ran out; every one once a shutdown's has."""
        now = time.monotonic()
        if self._stopping and now >= self._stop_by:
            doomed = list(self.conns.values())
        else:
            doomed = [c for c in self._closing if now >= c.close_by]
        for conn in doomed:
            self._drop(conn, None)

    def _drop(self, conn: Connection, reason: str | None) -> None:
        """Forget a connection now; `reason` None means the chat already knows."""
        if self.conns.pop(conn.sid, None) is None:
            return
        self._interest(conn, 0)
        conn.sock.close()
        self._backlog.discard(conn)
        self._dirty.discard(conn)
        self._writable.discard(conn)
        self._closing.discard(conn)
        self._over_limit.discard(conn)
        self._readers.pop(conn.sid, None)
        if reason is not None:
            self.chat.disconnect(conn.sid, reason)

    # -- stopping ----------------------------------------------------------------------

    def _begin_stop(self, reason: str) -> None:
        if self._stopping:
            return
        log.info("stopping: %s", reason)
        self._stopping = True
        self._stop_by = time.monotonic() + SHUTDOWN_GRACE
        self._accept_again = 0.0
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.listener.close()
        self.chat.shutdown(reason)

    def _close_everything(self) -> None:
        """Release everything, whatever state a crash left behind; then report stopped."""
        for conn in list(self.conns.values()):
            with contextlib.suppress(OSError):
                conn.sock.close()
        self._pool.shutdown()
        self._disk.shutdown()
        self._sync_done = True
        self._sync_pause.set()
        self._sync_wanted.set()
        try:
            self.save()
            self.history.close()
        except (OSError, ValueError):
            log.exception("history could not be flushed")
            self.exit_status = 1
        self.selector.close()
        with contextlib.suppress(OSError):
            self.listener.close()
        self._wake_r.close()
        self._wake_w.close()
        log.info("stopped")
        self._stopped.set()

    def _group_commit(self) -> None:
        """fsync history in batches, at most every SYNC_INTERVAL.

        A message is in the file (the OS's page cache) before it is broadcast,
        which is what survives kill -9; fsync guards against power loss, and one
        for every loop pass would cost the loop's core as much as the sends.
        """
        while True:
            self._sync_wanted.wait()
            if self._sync_done:
                return
            self._sync_wanted.clear()
            try:
                self.history.sync()
            except (OSError, ValueError) as exc:  # closed under us at shutdown
                log.debug("history fsync skipped: %s", exc)
            self._sync_pause.wait(SYNC_INTERVAL)

    def _status(self) -> dict[str, str]:
        return {
            "server": f"chat on {self.address}",
            "uptime": f"{time.monotonic() - self._started:.0f} s",
            "connections": f"{len(self.conns)} open, {self._accepted} total "
                           f"(max {self.config.max_clients})",
            **self.chat.status(),
            "bytes": f"{self._bytes_in} in, {self._bytes_out} out",
            "broadcast log": f"{len(self.log.data)} bytes buffered",
        }
