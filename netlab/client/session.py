"""The chat client's session, sans-IO: frames in, decisions out.

It owns every rule of a session that survives connection loss: log in (again),
asking for protocol version 2 when the server offers it, fill the gap a reconnect
left in every room and conversation (netlab.client.places and .timeline), send the
user's lines one at a time and know each by its echo, try again after
`rate_limited`, and decide when the client ends and with which status. It opens no
socket, starts no thread, reads no clock and no file: the driver
(netlab.client.network) tells it what arrived and what time it is, and carries out
the effects each call returns, in order: things to show, frames to send, timers and
reconnects wanted. So every rule is tested frame by frame
(tests/test_client_session.py, tests/test_client_rooms.py).
"""

from __future__ import annotations

from collections.abc import Callable

from netlab.client.auth import Authenticator
from netlab.client.effects import Credentials, Drop, Effect, Reconnect, Send, Show, Timer
from netlab.client.pending import Line, Pending
from netlab.client.places import GENERAL, Places
from netlab.client.requests import PASSWORD_ID, Requests, join_id
from netlab.client.words import error_sentence, news

#: Auth failures no retry can fix.
AUTH_FAILURES = {"invalid_username", "invalid_password", "username_taken", "bad_credentials"}
#: Refusals of a line that a later try may get through.
TRY_AGAIN = {"rate_limited", "unavailable"}
ROOM_EVENTS = {"joined", "left", "member", "topic", "read", "deleted"}
RESEND_DELAY = 0.5  # after rate_limited, try that message again this much later


class ClientSession:
    """One user's chat session over any number of connections, one at a time.

    Each method returns the effects to carry out. `status` is None while the
    session runs and the exit status once it has ended (README's list). The user's
    requests beyond lines are `requests` (netlab.client.requests).
    """

    def __init__(self, credentials: Credentials, address: str, history_at_login: int | None = None,
                 jitter: Callable[[], float] = lambda: 1.0, id_prefix: str = "c",
                 start: tuple[str, str] = (GENERAL, "general")) -> None:
        self.auth = Authenticator(credentials)
        self.address = address  # HOST:PORT, for "cannot connect to ..."
        self.username = credentials.username
        #: A fraction in [0, 1] that spreads reconnects (the driver's random.random): a
        #: restarted server is not hit by every client at once.
        self.jitter = jitter
        self.pending = Pending(id_prefix)
        self.places = Places(history_at_login, self._echoed)
        self.start = self.places.place(*start).key  # --room or --to: current once known to be there
        self.places.current = self.start
        self.requests = Requests(self)
        self.refused = 0  # lines not sent, by this side or the server's refusal: a pipe then fails
        self.refusal: str | None = None  # the auth failure that ended the session (a wrong password)
        self.status: int | None = None
        self.authenticated_once = False
        self.input_done = False  # no more lines will come: leave once nothing is pending
        self.connection = 0  # connections welcomed so far; timers name theirs
        self.connected = False  # a welcomed connection is up
        self.logged_in = False  # authenticated on this connection
        self.online = False  # logged in, every gap filled: lines go out at once
        self.leaving = False  # `quit` sent

    @property
    def place(self) -> str:
        """The current room or conversation for a prompt (`#dev`, `@bob`); none on version 1."""
        return self.places.by_key[self.places.current].tag if self.places.version == 2 else ""

    # -- the user's side -------------------------------------------------------------

    def say(self, text: str, number: int | None = None) -> list[Effect]:
        """Send a message to the current place now, or as soon as the session is (back) online.

        The text is the front end's to check first (netlab.client.lines.text_problem):
        it knows how to tell its user, by line number or in the prompt.
        """
        place = self.places.by_key[self.places.current]
        return self.queue(Line(text, number, place.key, place.say_target()))

    def queue(self, line: Line) -> list[Effect]:
        return self._send_first() if self.pending.add(line) else []

    def not_sent(self) -> list[Effect]:
        """The front end refused a line itself (not UTF-8, against the rules)."""
        self.refused += 1
        return []

    def end_of_input(self) -> list[Effect]:
        self.input_done = True
        return self._maybe_leave()

    def quit(self) -> list[Effect]:
        """Leave now (Ctrl-C, Ctrl-D, /quit): `quit`, whose `bye` ends the session; with no
        connection up, at once."""
        self.input_done = True
        self.pending.lines.clear()
        if not self.connected:
            return self._end(0)
        return self._leave()

    def fail(self, text: str, status: int = 1) -> list[Effect]:
        """End with `text` as the last words (a wrong peer, a bug in the driver)."""
        return [Show("fatal", text), *self._end(status)]

    # -- the connection's side ---------------------------------------------------------

    @property
    def reconnecting(self) -> bool:
        """A session is under way: a failure to connect is waited out, not the end."""
        return self.authenticated_once or self.auth.throttled

    def welcomed(self, frame: dict, now: float) -> list[Effect]:
        """A new connection's first frame: a `welcome` (then log in), or a fatal `error`."""
        self.connection += 1
        self.connected = True
        self.auth.welcomed(frame)
        effects = self.receive(frame, now)
        return effects if self.status is not None else [*effects, self.auth.request(self.authenticated_once)]

    def connection_lost(self, reason: str, now: float) -> list[Effect]:
        """The connection failed or ended (or none could be opened): reconnect after a
        backoff, or end, when no session was ever under way or the user is leaving."""
        self.connected = self.logged_in = self.online = False
        self.places.lost()
        if self.status is not None:
            return []
        if self.leaving:
            return self._end(0)
        if not self.reconnecting:
            return self.fail(f"cannot connect to {self.address}: {reason}")
        wait = self.auth.backoff() * (1 + self.jitter()) / 2
        return [Show("status", f"connection lost ({reason}); reconnecting in {wait:.1f} s"),
                Reconnect(now + wait)]

    def no_welcome(self, complaint: str, reason: str, now: float) -> list[Effect]:
        """A peer stayed silent. At the start that is no chat server (`complaint`); at a
        reconnect, a restarting server that listens before it loads its data: wait it out."""
        return self.connection_lost(reason, now) if self.reconnecting else self.fail(complaint)

    def timer_fired(self, name: tuple, now: float) -> list[Effect]:
        """A Timer fell due. It may be void by now: the line came back meanwhile, or the
        throttled login's connection is gone (a new one logs in by itself). Read markers
        not sent for want of a connection go with the next login's."""
        what, which = name
        if what == "resend" and self.pending.first() == which:
            return self._send_first()
        if what == "login" and which == self.connection and self.connected and self.auth.throttled:
            return [self.auth.request(self.authenticated_once)]
        if what == "read":
            if self.online:
                return self.places.reads()
            self.places.read_timer = False
        return []

    def receive(self, frame: dict, now: float) -> list[Effect]:
        """React to one frame of the server's."""
        kind = frame.get("type")
        general = self.places.general
        after_login = kind == "history" and general.login_history_due
        if after_login:
            frame = general.cut_login_history(frame)
        effects: list[Effect] = [Show("frame", frame=frame)]
        if kind == "ok":
            effects += self._on_ok(frame, now)
        elif kind == "history":
            effects += [*self.places.history(frame, not after_login, now), *self._maybe_online(now)]
        elif kind == "rooms":
            effects += [*self.places.rooms(frame, now), *self._maybe_online(now)]
        elif kind == "message":
            effects += [*self.places.live(frame, now), *self._maybe_leave()]
        elif kind in ROOM_EVENTS:
            effects += self.places.event(frame)
        elif kind in ("users", "join", "leave", "notice"):
            effects.append(news(frame))
        elif kind == "error":
            effects += self._on_error(frame, now)
        elif kind == "kicked":
            effects += self.fail(f"kicked by the operator: {frame.get('reason')}", 3)
        elif kind == "shutdown":
            effects.append(Show("status", f"the server is shutting down: {frame.get('reason')}", frame))
            effects += self._lost("server shutdown", now)
        elif kind == "bye":
            effects += self._end(0)
        return effects

    # -- rules -------------------------------------------------------------------------

    def _on_ok(self, frame: dict, now: float) -> list[Effect]:
        if frame.get("op") == "invite":
            return [Show("status", "invited", frame)]
        if frame.get("op") == "password":
            self.auth.password_changed()
            return [Show("status", "password changed: use the new one from now on", frame)]
        self.username = self.places.me = frame.get("username", self.username)
        self.places.version = frame.get("protocol") if frame.get("protocol") in (1, 2) else 1
        self.places.logged_in(self.places.version)
        self.logged_in = True
        self.auth.succeeded()
        if self.authenticated_once:
            self.places.general.syncing = True  # the history after `ok` may already cover the gap
            return [Show("status", f"reconnected as {self.username}", frame)]
        self.authenticated_once = True
        self.places.general.login_history_due = True
        return [Show("status", f"logged in as {self.username}", frame), *self._maybe_online(now)]

    def _echoed(self, message: dict, key: str) -> list[Effect]:
        """A message shown: an own one ends the wait for its line, and the next goes."""
        return self._send_first() if self.pending.echoed(message, key, self.username) else []

    def _on_error(self, frame: dict, now: float) -> list[Effect]:
        code = frame.get("code", "")
        sentence = error_sentence(frame)
        rid = frame.get("id") if isinstance(frame.get("id"), str) else None
        if frame.get("fatal"):
            if code == "auth_timeout" and self.auth.throttled:
                # A throttle lasts up to a minute, longer than a connection may wait
                # unauthenticated: go on trying on a new connection.
                return self._lost("no login in time while the login was throttled", now)
            return self.fail(sentence)
        if rid == PASSWORD_ID:  # /passwd refused: the session goes on with the old one
            wrong = "the current password is wrong; nothing changed"
            return [Show("error", f"error: {wrong}" if code == "bad_credentials" else sentence, frame)]
        if self.places.joining and rid == join_id(self.places.joining):
            self.places.joining = None  # refused: a `joined` later (an invitation) switches nothing
        if code in AUTH_FAILURES:
            self.refusal = code  # a terminal may ask for the password again
            return self.fail(sentence)
        if code in TRY_AGAIN and rid in self.pending.lines:
            return [Timer(now + RESEND_DELAY, ("resend", rid))]
        if code == "rate_limited" and not self.logged_in:
            return self.auth.later(frame, now, self.connection)
        line = self.pending.refused(rid)
        if line is None:
            return [Show("error", sentence, frame)]
        self.refused += 1
        return [Show("error", sentence, frame, line.number), *self._send_first(), *self._maybe_leave()]

    def _maybe_online(self, now: float) -> list[Effect]:
        """Once logged in and every gap is filled: send what waits (lines typed while
        offline, and after a reconnect those the filled gaps did not show, so they never
        got through) and the read markers due. After the first login, the place the
        client was started in must be known by then."""
        if not self.logged_in or self.online or not self.places.synced():
            return []
        if self.start is not None:
            problem = self.requests.at_start(self.start)
            self.start = None
            if problem is not None:
                return self.fail(problem)
        self.online = True
        return [*self._send_first(), *self.places.reads_due(now), *self._maybe_leave()]

    def _send_first(self) -> list[Effect]:
        """Put the oldest pending line on the wire."""
        frame = self.pending.say() if self.online else None
        return [Send(frame)] if frame else []

    def _maybe_leave(self) -> list[Effect]:
        if self.input_done and not self.pending.lines and self.online and not self.leaving:
            return self._leave()
        return []

    def _leave(self) -> list[Effect]:
        """`quit`, after the read markers not sent yet: what was shown was read."""
        self.leaving = True
        return [*(self.places.reads() if self.online else []), Send({"type": "quit"})]

    def _lost(self, reason: str, now: float) -> list[Effect]:
        """The server ended this connection in a way worth reconnecting after."""
        return [Drop(), *self.connection_lost(reason, now)]

    def _end(self, status: int) -> list[Effect]:
        if self.status is None:
            self.status = status
        return []
