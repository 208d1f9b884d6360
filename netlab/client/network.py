"""The chat client's network driver: sockets, threads and the clock around the sans-IO session.

The network thread owns the connection: it connects (netlab.connect: nothing is
sent before a valid `welcome`), reads and decodes frames, feeds them to the
session (netlab.client.session) and, when a connection ends, waits the backoff
the session chose and connects again. A timer thread runs the session's timers
(a line sent again after `rate_limited`, a throttled login tried again). The
front end's thread hands the user's lines and requests over through the methods
below.

Thread safety: everything here that changes after __init__ (the session, the
current socket, the timers, the reconnect time) is read and written only with
`_lock` held. Each call into the session is made under it, and the effects it
returns are carried out under it by the thread that made the call, sends
included, so frames leave in the session's order; only the showing comes after
the lock is released, in order, by that same thread (a display may block on a
full pipe, or call back into the client). The two Events are the only state
shared without the lock; the socket is read by the network thread alone.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from netlab import protocol as p
from netlab.client.session import ClientSession, Credentials, Drop, Effect, Reconnect, Send, Show, Timer
from netlab.connect import WELCOME_TIMEOUT, NoWelcome, Peer, WrongPeer, first_frame
from netlab.netutil import enable_keepalive

Display = Callable[[Show], None]


class ChatClient:
    """A chat session that survives connection loss; `display` receives every event
    the session shows (a line above the prompt, a line of standard output, JSON)."""

    def __init__(self, peer: Peer, credentials: Credentials, display: Display,
                 history_at_login: int | None = None) -> None:
        self.peer = peer
        self.display = display
        self.finished = threading.Event()  # the session has ended (`status` is set) and said so
        self._login_settled = threading.Event()  # the first `ok`, or the end: was the password right?
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # a timer was added, or the session ended
        self._session = ClientSession(credentials, peer.address, history_at_login, jitter=random.random)
        self._sock: socket.socket | None = None
        self._timers: list[tuple[float, int, tuple]] = []  # a heap of (when, order, name)
        self._order = itertools.count()
        self._reconnect_at: float | None = None
        self._started = False

    # -- the user's side (any thread) ------------------------------------------------

    def start(self) -> None:
        """Run the network and timer threads (once, however often called)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._guarded, args=(self._network,), name="network", daemon=True).start()
        threading.Thread(target=self._guarded, args=(self._run_timers,), name="timers", daemon=True).start()

    def wait_for_login(self) -> bool:
        """Wait until the first login succeeded (True) or the session ended (False)."""
        self._login_settled.wait()
        with self._lock:
            return self._session.authenticated_once

    def say(self, text: str, number: int | None = None) -> None:
        """Send a message (`number`: the front end's name for it, should the server refuse it)."""
        self._call(self._session.say, text, number)

    def request(self, frame: dict) -> None:
        self._call(self._session.request, frame)

    def older_history(self, count: int) -> None:
        self._call(self._session.older_history, count)

    def not_sent(self) -> None:
        self._call(self._session.not_sent)

    def end_of_input(self) -> None:
        self._call(self._session.end_of_input)

    def quit(self) -> None:
        self._call(self._session.quit)

    @property
    def username(self) -> str:
        with self._lock:
            return self._session.username

    @property
    def status(self) -> int | None:
        with self._lock:
            return self._session.status

    @property
    def refused(self) -> int:
        with self._lock:
            return self._session.refused

    @property
    def refusal(self) -> str | None:
        with self._lock:
            return self._session.refusal

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
            self._shutdown()  # the network thread, in recv
        return keep

    def _send(self, frame: dict) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendall(p.encode(frame))
        except OSError:  # the network thread sees the loss (woken, should it be in recv)
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

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
        """Connect, read; on loss reconnect when the session says, until it ends."""
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
            self._call(self._session.no_welcome, str(exc), f"no welcome within {WELCOME_TIMEOUT:g} s",
                       time.monotonic())
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
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        enable_keepalive(sock)  # a server gone without a FIN (power cut) ends the wait in recv
        if p.is_welcome(first):  # its max_frame is checked to be in PROTOCOL.md's range
            decoder.max_frame = first["max_frame"]
        reason = None
        try:
            if self._call(self._attach, sock, first):
                reason = self._read(sock, decoder)
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
        return [] if reason is None else self._session.connection_lost(reason, time.monotonic())

    def _read(self, sock: socket.socket, decoder: p.FrameDecoder) -> str | None:
        """Feed the session every frame that arrives; why the connection ended, or None
        when the session is done with it. Only this thread reads `sock`, without the lock."""
        while True:
            try:
                for frame in decoder:  # frames that came with the welcome first
                    if not self._call(self._session.receive, frame, time.monotonic()):
                        return None
            except p.ProtocolError as exc:
                return f"unreadable data from the server: {exc.message}"
            try:
                data = sock.recv(65536)
            except OSError as exc:
                return exc.strerror or str(exc)
            if not data:
                return "closed by the server"
            decoder.feed(data)
