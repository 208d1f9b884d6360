"""The chat client's session, sans-IO: frames in, decisions out.

It owns every rule of a session that survives connection loss: log in (again),
fill the gap a reconnect left (netlab.client.timeline), send the user's lines
one at a time and know each by its echo, try again after `rate_limited`, and
decide when the client ends and with which status. It opens no socket, starts
no thread, reads no clock and no file: the driver (netlab.client.network) tells
it what arrived and what time it is, and carries out the effects each call
returns, in order: things to show, frames to send, timers and reconnects wanted.
So every rule is tested frame by frame (tests/test_client_session.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from netlab.client.timeline import Timeline

#: One human sentence for each error code of PROTOCOL.md.
ERROR_SENTENCES = {
    "bad_frame": "the server could not read what this client sent",
    "frame_too_large": "a request was larger than the server accepts",
    "unknown_type": "the server does not know that request",
    "bad_request": "the server rejected that request as malformed",
    "not_authenticated": "log in first",
    "already_authenticated": "you are already logged in",
    "invalid_username": "a username is 1 to 32 letters, digits, '_', '.' or '-'",
    "invalid_password": "a password is 8 to 256 characters",
    "username_taken": "that username is taken",
    "bad_credentials": "unknown user or wrong password",
    "rate_limited": "you are sending too fast (or failed to log in too often); wait a moment",
    "auth_timeout": "the server closed the connection: no login in time",
    "server_full": "the server is full; try again later",
    "slow_consumer": "the server dropped you because you were not reading",
}
#: Auth failures no retry can fix.
AUTH_FAILURES = {"invalid_username", "invalid_password", "username_taken", "bad_credentials"}
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0
RESEND_DELAY = 0.5  # after rate_limited, try that message again this much later


@dataclass(frozen=True)
class Show:
    """Something for the user. `kind` tells a front end where it goes: "message" and
    "history" (a chat line, `frame` the message), "page" and "hint" (/history's
    markers), "users", "join", "leave", "notice", "status", "error", "fatal" (the
    last words), and "frame" (every frame received, for --json)."""

    kind: str
    text: str = ""
    frame: dict = field(default_factory=dict)
    line: int | None = None  # a refused line's number, as the front end passed it to `say`


@dataclass(frozen=True)
class Send:
    frame: dict


@dataclass(frozen=True)
class Timer:
    """Call `timer_fired(name, now)` once `now` reaches `at`."""

    at: float
    name: tuple


@dataclass(frozen=True)
class Reconnect:
    """The connection is over: open a new one at `at`."""

    at: float


@dataclass(frozen=True)
class Drop:
    """Close this connection now; the session has already taken it as lost."""


Effect = Show | Send | Timer | Reconnect | Drop


@dataclass
class Credentials:
    username: str
    password: str
    register: bool


@dataclass(frozen=True)
class Line:
    """A line of the user's waiting for its echo."""

    text: str
    number: int | None  # the front end's name for it (a pipe's line number)


class Pending:
    """The user's lines not yet seen broadcast, in order, by request id. Only the first
    is in flight: a line that is rate limited and sent again cannot overtake the next."""

    def __init__(self) -> None:
        self.lines: dict[str, Line] = {}
        self.ids = 0

    def add(self, line: Line) -> bool:
        """Queue `line`; True when it is the first, to be sent now."""
        self.ids += 1
        self.lines[f"c{self.ids}"] = line
        return len(self.lines) == 1

    def first(self) -> str | None:
        return next(iter(self.lines), None)

    def say(self) -> dict | None:
        """The `say` for the line in flight."""
        rid = self.first()
        return None if rid is None else {"type": "say", "text": self.lines[rid].text, "id": rid}

    def echoed(self, message: dict, username: str) -> bool:
        """Whether `message` is the line in flight come back (then it is done with)."""
        rid = self.first()
        if rid is None or message.get("from") != username:
            return False
        # From history (no id) after a reconnect, the line in flight is known by its text.
        if message.get("id") == rid or (message.get("id") is None
                                        and message.get("text") == self.lines[rid].text):
            del self.lines[rid]
            return True
        return False

    def refused(self, rid: str | None) -> Line | None:
        """The line the server refused for good by an error with `rid`, if that is the one
        in flight: no longer pending, so the next one need not wait on it."""
        return self.lines.pop(rid) if rid is not None and rid == self.first() else None


class ClientSession:
    """One user's chat session over any number of connections, one at a time.

    Each method returns the effects to carry out. `status` is None while the
    session runs and the exit status once it has ended (README's list).
    """

    def __init__(self, credentials: Credentials, address: str, history_at_login: int | None = None,
                 jitter: Callable[[], float] = lambda: 1.0) -> None:
        self.credentials = credentials
        self.address = address  # HOST:PORT, for "cannot connect to ..."
        self.username = credentials.username
        #: A fraction in [0, 1] that spreads reconnects (the driver's random.random): a
        #: restarted server is not hit by every client at once.
        self.jitter = jitter
        self.timeline = Timeline(history_at_login)
        self.pending = Pending()
        self.refused = 0  # lines not sent, by this side or the server's refusal: a pipe then fails
        self.refusal: str | None = None  # the auth failure that ended the session (a wrong password)
        self.status: int | None = None
        self.authenticated_once = False
        self.input_done = False  # no more lines will come: leave once nothing is pending
        self.connection = 0  # connections welcomed so far; timers name theirs
        self.connected = False  # a welcomed connection is up
        self.online = False  # authenticated on this connection, gap filled: lines go out at once
        self.leaving = False  # `quit` sent
        self.throttled = False  # a login was turned away with rate_limited; cleared by `ok`
        self.delay = BACKOFF_FIRST  # the next reconnect's backoff; reset by each login

    # -- the user's side -------------------------------------------------------------

    def say(self, text: str, number: int | None = None) -> list[Effect]:
        """Send a message now, or as soon as the session is (back) online.

        The text is the front end's to check first (netlab.client.lines.text_problem):
        it knows how to tell its user, by line number or in the prompt.
        """
        return self._send_first() if self.pending.add(Line(text, number)) else []

    def request(self, frame: dict) -> list[Effect]:
        """A request of the user's (/users, /history): on this connection, if any."""
        return [Send(frame)] if self.connected else []

    def older_history(self, count: int) -> list[Effect]:
        return self.request(self.timeline.older(count))

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
        self.leaving = True
        return [Send({"type": "quit"})]

    def fail(self, text: str, status: int = 1) -> list[Effect]:
        """End with `text` as the last words (a wrong peer, a bug in the driver)."""
        return [Show("fatal", text), *self._end(status)]

    # -- the connection's side ---------------------------------------------------------

    @property
    def reconnecting(self) -> bool:
        """A session is under way: a failure to connect is waited out, not the end."""
        return self.authenticated_once or self.throttled

    def welcomed(self, frame: dict, now: float) -> list[Effect]:
        """A new connection's first frame: a `welcome` (then log in), or a fatal `error`."""
        self.connection += 1
        self.connected = True
        effects = self.receive(frame, now)
        return effects if self.status is not None else [*effects, self._authenticate()]

    def connection_lost(self, reason: str, now: float) -> list[Effect]:
        """The connection failed or ended (or none could be opened): reconnect after a
        backoff, or end, when no session was ever under way or the user is leaving."""
        self.connected = self.online = False
        self.timeline.lost()
        if self.status is not None:
            return []
        if self.leaving:
            return self._end(0)
        if not self.reconnecting:
            return self.fail(f"cannot connect to {self.address}: {reason}")
        wait = self.delay * (1 + self.jitter()) / 2
        self.delay = min(BACKOFF_MAX, self.delay * 2)
        return [Show("status", f"connection lost ({reason}); reconnecting in {wait:.1f} s"),
                Reconnect(now + wait)]

    def no_welcome(self, complaint: str, reason: str, now: float) -> list[Effect]:
        """A peer stayed silent. At the start that is no chat server (`complaint`); at a
        reconnect, a restarting server that listens before it loads its data: wait it out."""
        return self.connection_lost(reason, now) if self.reconnecting else self.fail(complaint)

    def timer_fired(self, name: tuple, now: float) -> list[Effect]:
        """A Timer fell due. It may be void by now: the line came back meanwhile, or the
        throttled login's connection is gone (a new one logs in by itself)."""
        what, which = name
        if what == "resend" and self.pending.first() == which:
            return self._send_first()
        if what == "login" and which == self.connection and self.connected and self.throttled:
            return [self._authenticate()]
        return []

    def receive(self, frame: dict, now: float) -> list[Effect]:
        """React to one frame of the server's."""
        kind = frame.get("type")
        after_login = kind == "history" and self.timeline.login_history_due
        if after_login:
            frame = self.timeline.cut_login_history(frame)
        effects: list[Effect] = [Show("frame", frame=frame)]
        if kind == "ok":
            effects += self._on_ok(frame)
        elif kind == "history":
            effects += self._on_history(frame, page=not after_login)
        elif kind == "message":
            effects += self._show_messages(self.timeline.live(frame))
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

    def _authenticate(self) -> Send:
        creds = self.credentials
        op = "register" if creds.register and not self.authenticated_once else "login"
        return Send({"type": op, "username": creds.username, "password": creds.password})

    def _on_ok(self, frame: dict) -> list[Effect]:
        self.username = frame.get("username", self.username)
        self.delay = BACKOFF_FIRST
        self.throttled = False
        if self.authenticated_once:
            self.timeline.syncing = True  # the history after `ok` may already cover the gap
            return [Show("status", f"reconnected as {self.username}", frame)]
        self.authenticated_once = True
        self.timeline.login_history_due = True
        return [Show("status", f"logged in as {self.username}", frame), *self._go_online()]

    def _on_history(self, frame: dict, page: bool) -> list[Effect]:
        """The history after login, a /history `page`, or what a reconnect missed."""
        if self.timeline.syncing:
            messages, request = self.timeline.fill_gap(frame)
            effects = self._show_messages(messages)
            return [*effects, Send(request)] if request else [*effects, *self._go_online()]
        messages = frame.get("messages", [])
        self.timeline.page(messages)
        lines = [Show("history", message_line(message), message) for message in messages]
        if page and messages:
            # Set apart from the live conversation, whose times it would seem to run back.
            count = len(messages)
            lines = [Show("page", f"── {count} earlier message{'s' if count > 1 else ''} ──", frame),
                     *lines, Show("page", "── end of earlier messages ──", frame)]
        # Hints about /history: a prompt has it, a pipe does not (and drops them).
        if not messages:
            lines.append(Show("hint", "no older messages", frame))
        elif frame.get("more"):
            lines.append(Show("hint", "(older messages: /history)", frame))
        return lines

    def _show_messages(self, messages: list[dict]) -> list[Effect]:
        """New messages, in order; an own one ends the wait for its line, and the next goes."""
        effects: list[Effect] = []
        for message in messages:
            if self.pending.echoed(message, self.username):
                effects += self._send_first()
            effects.append(Show("message", message_line(message), message))
        return [*effects, *self._maybe_leave()] if messages else effects

    def _on_error(self, frame: dict, now: float) -> list[Effect]:
        code = frame.get("code", "")
        sentence = ERROR_SENTENCES.get(code, frame.get("message", code))
        if frame.get("fatal"):
            if code == "auth_timeout" and self.throttled:
                # A throttle lasts up to a minute, longer than a connection may wait
                # unauthenticated: go on trying on a new connection.
                return self._lost("no login in time while the login was throttled", now)
            return self.fail(f"error: {sentence}")
        if code in AUTH_FAILURES:
            self.refusal = code  # a terminal may ask for the password again
            return self.fail(f"error: {sentence}")
        rid = frame.get("id") if isinstance(frame.get("id"), str) else None
        if code == "rate_limited" and rid in self.pending.lines:
            return [Timer(now + RESEND_DELAY, ("resend", rid))]
        if code == "rate_limited" and not self.online and not self.timeline.syncing:
            return self._login_later(frame, now)
        line = self.pending.refused(rid)
        if line is None:
            return [Show("error", f"error: {sentence}", frame)]
        self.refused += 1
        return [Show("error", f"error: {sentence}", frame, line.number), *self._send_first(),
                *self._maybe_leave()]

    def _login_later(self, frame: dict, now: float) -> list[Effect]:
        """The login itself was turned away: failed logins for this name or address
        (for up to a minute), or a server busy hashing. Try again later and later,
        with the server's reason, rather than twice a second for that minute."""
        wait = self.delay
        self.delay = min(BACKOFF_MAX, self.delay * 2)
        self.throttled = True
        return [Show("error", f"error: the server refused the login for now ({frame.get('message')}); "
                     f"trying again in {wait:.1f} s", frame),
                Timer(now + wait, ("login", self.connection))]

    def _go_online(self) -> list[Effect]:
        """Send what waits: lines typed while offline, and after a reconnect what
        the filled gap did not show (so it never got through)."""
        self.online = True
        return [*self._send_first(), *self._maybe_leave()]

    def _send_first(self) -> list[Effect]:
        """Put the oldest pending line on the wire."""
        frame = self.pending.say() if self.online else None
        return [Send(frame)] if frame else []

    def _maybe_leave(self) -> list[Effect]:
        if self.input_done and not self.pending.lines and self.online and not self.leaving:
            self.leaving = True
            return [Send({"type": "quit"})]
        return []

    def _lost(self, reason: str, now: float) -> list[Effect]:
        """The server ended this connection in a way worth reconnecting after."""
        return [Drop(), *self.connection_lost(reason, now)]

    def _end(self, status: int) -> list[Effect]:
        if self.status is None:
            self.status = status
        return []


def news(frame: dict) -> Show:
    """A `users`, `join`, `leave` or `notice` frame, said in words."""
    kind = frame["type"]
    if kind == "users":
        more = " …" if frame.get("more") else ""
        return Show(kind, f"online ({frame.get('count')}): {', '.join(frame.get('online', []))}{more}", frame)
    if kind == "notice":
        return Show(kind, f"notice from the operator: {frame.get('text')}", frame)
    return Show(kind, f"{frame.get('username')} {'joined' if kind == 'join' else 'left'}", frame)


def message_line(message: dict) -> str:
    """A chat line without its time, which the front end adds in its own zone."""
    return f"{message.get('from')}: {message.get('text')}"
