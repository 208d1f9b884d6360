"""The chat client's network driver: sockets, threads and the clock around the sans-IO session.

The network thread owns the connection: it connects (netlab.connect: nothing is
sent before a valid `welcome`), reads and decodes frames, feeds them to the
session (netlab.client.session), writes what the session sends and, when a
connection ends, waits the backoff the session chose and connects again. It is
the only thread that touches the socket: other threads queue their frames in
`_outbox` and wake it through a socket pair. One TLS connection must not be read
and written by two threads at once (OpenSSL's SSL objects are not thread-safe),
and a server that stops reading then blocks no thread but this one, which goes
on reading. A timer thread runs the session's timers
(a line sent again after `rate_limited`, a throttled login tried again). The
front end's thread hands the user's lines and requests over through the methods
below.

Thread safety: everything here that changes after __init__ (the session, the
current socket, the timers, the reconnect time) is read and written only with
`_lock` held. Each call into the session is made under it, and the effects it
returns are carried out under it by the thread that made the call (a frame to
send joins `_outbox`, so frames leave in the session's order); only the showing
comes after the lock is released, in order, by that same thread (a display may
block on a full pipe, or call back into the client). The two Events are the only
state shared without the lock.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import secrets
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from netlab import wire as p
from netlab.client.effects import Credentials, Drop, Effect, Reconnect, Send, Show, Timer
from netlab.client.places import GENERAL
from netlab.client.session import ClientSession
from netlab.connect import NoWelcome, Peer, WrongPeer, first_frame
from netlab.netutil import tune_chat_socket, wake_pair

Display = Callable[[Show], None]

RECV_SIZE = 65536
#: Socket errors that mean "not now": the selector says when to try again.
NOT_NOW = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _from_session(name: str) -> property:
    """A read-only attribute of the session, read under the client's lock."""

    def read(client: ChatClient) -> Any:
        with client._lock:
            return getattr(client._session, name)

    return property(read, doc=f"The session's `{name}`, read under the lock.")


class ChatClient:
    """A chat session that survives connection loss; `display` receives every event
    the session shows (a line above the prompt, a line of standard output, JSON)."""

    def __init__(self, peer: Peer, credentials: Credentials, display: Display,
                 history_at_login: int | None = None, start: tuple[str, str] = (GENERAL, "general")) -> None:
        self.peer = peer
        self.display = display
        self.finished = threading.Event()  # the session has ended (`status` is set) and said so
        self._login_settled = threading.Event()  # the first `ok`, or the end: was the password right?
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # a timer was added, or the session ended
        # Line ids of this run's own: a version 2 server takes an id it has seen for a resend.
        self._session = ClientSession(credentials, peer.address, history_at_login, jitter=random.random,
                                      id_prefix=f"c{secrets.token_hex(6)}-", start=start)
        self._sock: socket.socket | None = None
        self._outbox = bytearray()  # encoded frames for the network thread to send on `_sock`
        # Wakes the network thread in select(): a frame to send, or the end.
        self._wake_r, self._wake_w = wake_pair()
        self._timers: list[tuple[float, int, tuple]] = []  # a heap of (when, order, name)
        self._order = itertools.count()
        self._reconnect_at: float | None = None
        self._not_started = threading.Lock()  # held for good by the first start()

    # -- the user's side (any thread) ------------------------------------------------

    def start(self) -> None:
        """Run the network and timer threads (once, however often called)."""
        if not self._not_started.acquire(blocking=False):
            return
        threading.Thread(target=self._guarded, args=(self._network,), name="network", daemon=True).start()
        threading.Thread(target=self._guarded, args=(self._run_timers,), name="timers", daemon=True).start()

    def wait_for_login(self) -> bool:
        """Wait until the first login succeeded (True) or the session ended (False)."""
        self._login_settled.wait()
        return self.authenticated_once

    def say(self, text: str, number: int | None = None) -> None:
        """Send a message (`number`: the front end's name for it, should the server refuse it)."""
        self._call(self._session.say, text, number)

    def ask(self, request: str, *args: Any) -> None:
        """A request beyond lines: a method of netlab.client.requests (join, history ...)."""
        self._call(getattr(self._session.requests, request), *args)

    def not_sent(self) -> None:
        self._call(self._session.not_sent)

    def end_of_input(self) -> None:
        self._call(self._session.end_of_input)

    def quit(self) -> None:
        self._call(self._session.quit)

    authenticated_once = _from_session("authenticated_once")
    username = _from_session("username")
    place = _from_session("place")  # the current room or conversation, for the prompt
    status = _from_session("status")  # the exit status once the session has ended
    refused = _from_session("refused")  # lines the server refused
    refusal = _from_session("refusal")  # the auth failure that ended the session

    # -- carrying out the session's effects -------------------------------------------

    def _call(self, method: Callable[..., list[Effect]], *args: Any) -> bool:
        """Call `method` (the session's, or one of the driver's that calls it) with the lock
        held and carry out its effects: all but showing under the lock, then the showing,
        in order, after it (a display may block on a full pipe, or call back: quit).
        False when the effects end this connection (the session dropped it, or ended).

        The Events are set last: a front end that sees the end, or a failed login, finds
        the last words already shown (and asks for the password again only after them).
        """
        with self._lock:
            effects = method(*args)
            keep = self._apply(effects)
            ended = self._session.status is not None
            settled = ended or self._session.authenticated_once
        try:
            for effect in effects:
                if isinstance(effect, Show):
                    self.display(effect)
        finally:
            if settled:
                self._login_settled.set()
            if ended:
                self.finished.set()
        return keep and not ended

    def _apply(self, effects: list[Effect]) -> bool:
        """(lock held) Every effect but Show; False if one drops the connection."""
        keep = True
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect.frame)
            elif isinstance(effect, Timer):
                heapq.heappush(self._timers, (effect.at, next(self._order), effect.name))
                self._wake.notify_all()
            elif isinstance(effect, Reconnect):
                self._reconnect_at = effect.at
            elif isinstance(effect, Drop):
                keep = False
        if self._session.status is not None:  # the end: wake every thread that waits
            self._wake.notify_all()
            self._poke()  # the network thread, in select(), closes the connection
        return keep

    def _send(self, frame: dict) -> None:
        """(lock held) Queue `frame` for the network thread; dropped with no connection up
        (the session sends again what matters once it is back)."""
        if self._sock is None:
            return
        self._outbox += p.encode(frame)
        self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    # -- the threads ---------------------------------------------------------------------

    def _guarded(self, body: Callable[[], None]) -> None:
        """Run a thread's `body`: a bug (or a closed stdout) ends the session loudly, never
        in a hang of a front end waiting on `finished`."""
        try:
            body()
        except Exception as exc:
            with contextlib.suppress(Exception):  # the display may be what failed; ended all the same
                self._call(self._session.fail, f"error: {exc!r}")

    def _network(self) -> None:
        """Connect, read and write; on loss reconnect when the session says, until it ends."""
        try:
            while True:
                connection = self._connect()
                if connection is not None:
                    self._serve(*connection)
                with self._wake:
                    while self._session.status is None and self._reconnect_at is not None \
                            and (left := self._reconnect_at - time.monotonic()) > 0:
                        self._wake.wait(left)
                    self._reconnect_at = None
                    if self._session.status is not None:
                        return
        finally:
            self._wake_r.close()  # a late _poke() then fails quietly
            self._wake_w.close()

    def _run_timers(self) -> None:
        """Call the session back as each of its timers falls due, until it ends."""
        while True:
            with self._wake:
                while self._session.status is None and not (
                        self._timers and self._timers[0][0] <= time.monotonic()):
                    self._wake.wait(self._timers[0][0] - time.monotonic() if self._timers else None)
                if self._session.status is not None:
                    return
                _, _, name = heapq.heappop(self._timers)
            self._call(self._session.timer_fired, name, time.monotonic())

    def _connect(self) -> tuple[socket.socket, p.FrameDecoder, dict] | None:
        """A connection whose peer has sent its `welcome` (or a fatal `error`), nothing sent
        yet; None when there is none, the session having been told why."""
        try:
            sock = self.peer.open()
        except WrongPeer as exc:
            self._call(self._session.fail, str(exc))
            return None
        except OSError as exc:
            self._call(self._session.connection_lost, exc.strerror or str(exc), time.monotonic())
            return None
        decoder = p.FrameDecoder()
        try:
            return sock, decoder, first_frame(self.peer, sock, decoder)
        except NoWelcome as exc:
            sock.close()
            waited = f"no welcome within {self.peer.welcome_timeout:g} s"
            self._call(self._session.no_welcome, str(exc), waited, time.monotonic())
        except WrongPeer as exc:
            sock.close()
            self._call(self._session.fail, str(exc))
        except OSError as exc:
            sock.close()
            self._call(self._session.connection_lost, exc.strerror or str(exc), time.monotonic())
        return None

    def _serve(self, sock: socket.socket, decoder: p.FrameDecoder, first: dict) -> None:
        """Log in on a welcomed connection and feed the session what arrives, until the
        connection ends (the session is told why) or the session is done with it."""
        sock.setblocking(False)
        tune_chat_socket(sock)
        if p.is_welcome(first):  # its max_frame is checked to be in PROTOCOL.md's range
            decoder.max_frame = first["max_frame"]
        reason = None
        try:
            if self._call(self._attach, sock, first):
                reason = self._pump(sock, decoder)
        finally:
            self._call(self._detach, reason)
            sock.close()

    def _attach(self, sock: socket.socket, first: dict) -> list[Effect]:
        """(lock held) `sock` becomes the session's connection, unless it ended meanwhile (quit)."""
        if self._session.status is not None:
            return []
        self._sock = sock
        return self._session.welcomed(first, time.monotonic())

    def _detach(self, reason: str | None) -> list[Effect]:
        """(lock held) The connection is over; the session hears why, unless it ended it."""
        self._sock = None
        self._outbox.clear()  # for that connection: the session sends again what it must
        return [] if reason is None else self._session.connection_lost(reason, time.monotonic())

    def _pump(self, sock: socket.socket, decoder: p.FrameDecoder) -> str | None:
        """Move bytes both ways until the connection ends: feed the session every frame that
        arrives and send what it queued. Why the connection ended, or None when the session
        is done with it."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(sock, selectors.EVENT_READ)
            while True:
                try:
                    for frame in decoder:  # frames that came with the welcome first
                        if not self._call(self._session.receive, frame, time.monotonic()):
                            return None
                except p.ProtocolError as exc:
                    return f"unreadable data from the server: {exc.message}"
                with self._lock:
                    if self._session.status is not None:
                        return None
                    writing = bool(self._outbox)
                selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0))
                for key, events in selector.select():
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            while self._wake_r.recv(4096):
                                pass
                        continue
                    reason = self._write(sock) if events & selectors.EVENT_WRITE else None
                    if reason is None and events & selectors.EVENT_READ:
                        reason = receive(sock, decoder.feed)
                    if reason is not None:
                        return reason

    def _write(self, sock: socket.socket) -> str | None:
        """Send what the socket takes of the outbox; why the connection failed, or None."""
        with self._lock:
            return send_some(sock, self._outbox)


def receive(sock: socket.socket, feed: Callable[[bytes], None]) -> str | None:
    """Feed what has arrived (with TLS, also what the SSL object holds decrypted
    already, which raises no event); why the connection ended, or None."""
    try:
        data = sock.recv(RECV_SIZE)
        while isinstance(sock, ssl.SSLSocket) and (waiting := sock.pending()):
            data += sock.recv(waiting)
    except NOT_NOW:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    if not data:
        return "closed by the server"
    feed(data)
    return None


def send_some(sock: socket.socket, outbox: bytearray) -> str | None:
    """Send what the socket takes of `outbox` and drop it from there; why the connection
    failed, or None."""
    try:
        sent = sock.send(outbox)
    except NOT_NOW:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    del outbox[:sent]
    return None
