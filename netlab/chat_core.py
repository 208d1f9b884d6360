"""The chat's rules, sans-IO: who may do what, who gets which frame, what is kept.

`Chat` owns sessions, presence, flood control, login throttling and the
order of things (history is written before a message is broadcast; `ok`,
`history`, `users` precede the `join` the others see). It touches no socket
and starts no thread: it tells the loop what to do through `Effects`, and
the loop tells it what happened (a connection, a frame, a finished hash, the
time: `advance` gives it the monotonic and the wall clock at each loop pass).
Tests drive it with a recording `Effects` and no network at all.

Every payload is encoded here, once, as JSON: a broadcast is one `bytes`
object that the loop frames once per codec in use and hands to every
subscribed session unchanged. Framing is the codec's (`wire.frames`); the
chat never sees a header.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from netlab import wire as p
from netlab.chat.jobs import USERNAME_TAKEN, CreateAccount, Job, ReadPage, VerifyPassword
from netlab.chat.sessions import State, move, refusal
from netlab.logs import get_logger, safe
from netlab.peraddress import DEFAULT_MAX_CLIENTS_PER_IP, AddressLimit
from netlab.store import Account, Accounts, History, Record

log = get_logger("chat")


@dataclass(frozen=True)
class ChatConfig:
    """Every limit of the chat, with its default and the reason for it."""

    #: Largest frame either way (PROTOCOL.md; at least 16384 so any message fits).
    max_frame: int = p.DEFAULT_MAX_FRAME
    #: Open connections, authenticated or not; more get `server_full`.
    max_clients: int = 10_000
    #: Of those, open from one address; more get `server_full`. A class behind one NAT
    #: (30 to 40 people with a device or two each) fits; one host no longer takes every
    #: place (peraddress.py; ngircd's MaxConnectionsIP is the precedent).
    max_clients_per_ip: int = DEFAULT_MAX_CLIENTS_PER_IP
    #: Bytes queued for one connection before it is cut as a slow consumer:
    #: enough for a burst of a few hundred long messages, small enough that
    #: ten thousand clients cannot pin the server's memory.
    max_output: int = 4 * 1024 * 1024
    #: Seconds a connection may stay unauthenticated.
    auth_timeout: float = 30.0
    #: `say` requests a second per session (token bucket, bursts of twice
    #: that, and of at least one); 0 turns flood control off.
    rate_limit: float = 10.0
    #: Messages sent right after login.
    history_size: int = 50
    #: Messages kept in memory for `history`; older pages come from disk.
    history_window: int = 10_000
    #: Registrations and logins queued for a password hash or hashing; more
    #: get `rate_limited` instead of an unbounded queue. A queued one costs a
    #: few hundred bytes (only the running ones hold Argon2's 19 MiB), and at
    #: about 25 ms a hash the last of 1,024 waits some 13 s on two cores,
    #: inside the default auth timeout.
    max_pending_auth: int = 1024


#: Failed-login throttle of PROTOCOL.md (not configurable there).
LOGIN_WINDOW = 60.0
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_IP = 20
#: Tracked throttle keys; the oldest are forgotten past this, so a flood of
#: made-up usernames cannot grow memory without bound.
MAX_THROTTLE_KEYS = 100_000


class Effects(Protocol):
    """What the chat asks of the loop that runs it."""

    def send(self, sid: int, payload: p.Payload) -> None:
        """Queue a payload for one session (its connection's codec frames it)."""

    def broadcast(self, payload: p.Payload, *, urgent: bool = True) -> None:
        """Queue a payload for every subscribed session (framed once per codec in use).

        Not urgent (presence): it may wait a little for company, so that a
        storm of joins costs the loop a few passes over a large room, not one each.
        """

    def subscribe(self, sid: int) -> None:
        """From now on this session receives broadcasts (those queued later)."""

    def persist(self, record: Record) -> None:
        """Append a message to history; done before the loop sends anything further."""

    def save(self) -> None:
        """Write what `persist` queued now, so the history window includes it."""

    def close(self, sid: int) -> None:
        """Close the session once what is queued for it has gone out."""

    def submit(self, sid: int, job: Job, done: Callable[[Any], None]) -> None:
        """Have `job` done off the loop (chat/jobs.py says what each gives); call
        `done(result)` on the loop afterwards. The session is held (see `hold`) until then.

        If the job raises, `done` gets the exception as its result.
        """

    def hold(self, sid: int, held: bool) -> None:
        """Keep the session's next requests waiting (True), or let them through again.

        A session's requests are answered one at a time, in order: one that waits
        (for a hash, a disk read, a throttle) holds back those sent after it.
        """


class Session:
    """One connection as the chat sees it."""

    __slots__ = ("sid", "peer", "ip", "state", "username", "account", "tokens", "refilled")

    def __init__(self, sid: int, peer: str, ip: str, now: float, burst: float) -> None:
        self.sid = sid
        self.peer = peer
        self.ip = ip
        self.state = State.CONNECTED  # what it may ask and become: chat/sessions.py
        self.username: str | None = None  # once AUTHENTICATED
        #: The account it logged in as: `clear file` (and a name registered again since)
        #: leaves a different object, or none, under the same name.
        self.account: Account | None = None
        self.tokens = burst
        self.refilled = now


def _who(session: Session) -> str:
    """A session as log lines name it."""
    return f"{safe(session.username)} from {session.peer}" if session.username else session.peer


#: How a request that may not start is answered: (session, code, request id, message or None).
Refusal = Callable[[Session, str, str | None, str | None], None]


def _log_refused_registration(session: Session, code: str) -> None:
    """The code and the address only: the name tried is no account, and now and then it is
    a password typed into the wrong field (PROTOCOL.md: the log never holds a password)."""
    log.info("registration refused for %s: %s", session.peer, code)


def throttle_key(username: str) -> str:
    """The failed-login key of a name: case-insensitive (PROTOCOL.md), and small even for a
    name no account can have, which may be as long as a frame. Such a name is kept as a
    digest; "#" is not in any account's name, so the two kinds never meet."""
    if p.valid_username(username):
        return username.lower()
    folded = username.lower().encode("utf-8", "surrogatepass")
    return "#" + hashlib.blake2b(folded, digest_size=16).hexdigest()


class Throttle:
    """Failures per key within a sliding window (failed logins, PROTOCOL.md).

    Attempts still being hashed count against the limit too (`busy`): otherwise a
    burst of simultaneous guesses would all pass the check before the first failed.
    """

    def __init__(self, limit: int, window: float = LOGIN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        #: Times of failures in the window, oldest first: a few floats, so a list (an
        #: empty deque alone is 600 bytes, times 100,000 keys).
        self._failures: dict[str, list[float]] = {}
        self._in_flight: Counter[str] = Counter()
        #: key -> logins waiting for that key's attempts in flight (`busy`), with their sessions
        self.waiting: dict[str, deque[tuple[Session, p.Login]]] = {}

    def refused(self, key: str, now: float) -> bool:
        """Has `key` failed `limit` times within the window?"""
        times = self._failures.get(key)
        if times is None:
            return False
        expired = 0
        while expired < len(times) and times[expired] <= now - self.window:
            expired += 1
        del times[:expired]
        if not times:
            del self._failures[key]
        return len(times) >= self.limit

    def busy(self, key: str) -> bool:
        """Would one more attempt, were all those in flight to fail, pass the limit?"""
        return len(self._failures.get(key, ())) + self._in_flight.get(key, 0) >= self.limit

    def begin(self, key: str) -> None:
        self._in_flight[key] += 1

    def end(self, key: str) -> None:
        self._in_flight[key] -= 1
        if not self._in_flight[key]:
            del self._in_flight[key]

    def fail(self, key: str, now: float) -> None:
        times = self._failures.pop(key, None) or []
        times.append(now)
        self._failures[key] = times  # re-inserted: dict order is least recently failed first
        if len(self._failures) > MAX_THROTTLE_KEYS:
            del self._failures[next(iter(self._failures))]


class Chat:
    """The chat state machine. Every method runs on the loop thread."""

    def __init__(self, config: ChatConfig, accounts: Accounts, history: History, effects: Effects) -> None:
        self.config = config
        self.accounts = accounts
        self.history = history
        self.fx = effects
        #: The loop's clocks as of its current pass (`advance`): monotonic for every deadline,
        #: bucket and throttle, so a clock step changes none of them; wall time only for `ts`.
        self.now = 0.0
        self.wall = 0.0
        self.sessions: dict[int, Session] = {}
        #: lower-cased name -> (name as registered, its session ids)
        self.online: dict[str, tuple[str, set[int]]] = {}
        self._sorted_online: list[str] = []  # lower-cased names, kept sorted for `users`
        self._reserved: set[str] = set()  # names with a registration in flight
        self._deadlines: deque[tuple[float, int]] = deque()  # auth deadlines, in accept order
        self._name_throttle = Throttle(MAX_FAILURES_PER_NAME)
        self._ip_throttle = Throttle(MAX_FAILURES_PER_IP)
        self._per_address = AddressLimit(config.max_clients_per_ip, log)
        self.pending_auth = 0
        self.next_seq = history.last_seq + 1
        self.messages_in = 0
        self.deliveries = 0
        self.subscribers = 0
        self._welcome = p.encode_payload(p.welcome(config.max_frame))

    def advance(self, now: float, wall: float) -> None:
        """The time, as the loop tells it at each pass: `now` monotonic, `wall` the epoch."""
        self.now = now
        self.wall = wall

    # -- connections ----------------------------------------------------------

    def connect(self, sid: int, peer: str, ip: str, now: float) -> None:
        if len(self.sessions) >= self.config.max_clients:
            log.info("refused %s: %d connections open (--max-clients)", peer, len(self.sessions))
            self._fatal_to(sid, "server_full", f"the server holds {self.config.max_clients} connections")
            return
        if not self._per_address.admit(ip):  # logged there, once per burst
            limit = self.config.max_clients_per_ip
            self._fatal_to(sid, "server_full", f"the server holds {limit} connections from your address")
            return
        self.sessions[sid] = Session(sid, peer, ip, now, self._burst)
        self._deadlines.append((now + self.config.auth_timeout, sid))
        log.info("connected %s", peer)
        self.fx.send(sid, self._welcome)

    def disconnect(self, sid: int, reason: str) -> None:
        """The connection is gone (or going): forget the session, tell the others."""
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        self._per_address.release(session.ip)
        log.info("disconnected %s (%s)", _who(session), reason)
        if session.state is not State.AUTHENTICATED:
            return
        self.subscribers -= 1
        key = session.username.lower()
        name, sids = self.online[key]
        sids.discard(sid)
        if not sids:
            del self.online[key]
            del self._sorted_online[bisect.bisect_left(self._sorted_online, key)]
            self.fx.broadcast(p.encode_payload(p.presence("leave", name)), urgent=False)

    def expire(self, now: float) -> float | None:
        """Time out unauthenticated sessions; returns the next deadline, if any."""
        while self._deadlines:
            deadline, sid = self._deadlines[0]
            session = self.sessions.get(sid)
            if session is None or session.state is State.AUTHENTICATED:
                self._deadlines.popleft()
                continue
            if deadline > now:
                return deadline
            self._deadlines.popleft()
            log.info("auth timeout %s", session.peer)
            timeout = self.config.auth_timeout
            self._fatal(session, "auth_timeout", f"no register or login within {timeout:g} s")
        return None

    # -- frames from clients -----------------------------------------------------

    def receive(self, sid: int, frame: dict) -> None:
        """One decoded frame from a client."""
        session = self.sessions.get(sid)
        if session is None:
            return
        kind = frame["type"]
        refused = refusal(session.state, kind)
        if refused is not None:
            return self._error(session, refused, p.request_id(frame))
        try:
            request = p.parse_request(frame)
        except p.ProtocolError as exc:
            if kind == "register":
                _log_refused_registration(session, exc.code)
            self.fx.send(sid, p.encode_payload(exc.to_frame()))
            return
        handler = self._handlers[type(request)]
        handler(self, session, request)

    def protocol_error(self, sid: int, exc: p.ProtocolError) -> None:
        """A fatal framing fault on this connection."""
        session = self.sessions.get(sid)
        if session is not None:
            log.info("bad frame from %s: %s", session.peer, exc.message)
            self._fatal(session, exc.code, exc.message)

    def slow_consumer(self, sid: int) -> None:
        """The client stopped reading and its pending output passed max_output."""
        session = self.sessions.get(sid)
        if session is not None:
            limit = self.config.max_output
            log.info("slow consumer %s: more than %d bytes pending", session.peer, limit)
            self._fatal(session, "slow_consumer", f"more than {limit} bytes of output pending")

    def _register(self, session: Session, request: p.Register) -> None:
        if not self._may_start_auth(session, request.id, self._refuse_registration):
            return
        key = request.username.lower()
        if key in self._reserved or self.accounts.get(request.username) is not None:
            return self._refuse_registration(session, "username_taken", request.id)
        self._reserved.add(key)
        self._start_auth(session)
        username = request.username

        def done(result: object) -> None:
            self._reserved.discard(key)
            self._end_auth(session)
            if isinstance(result, Exception):
                log.error("registration of %s failed: %s", safe(username), result)
                return self._error(session, "bad_request", request.id, "the account could not be stored")
            if result == USERNAME_TAKEN:
                return self._refuse_registration(session, "username_taken", request.id)
            log.info("registered %s from %s", safe(username), session.peer)
            self._authenticate(session, result, "register", request.id)

        self.fx.submit(session.sid, CreateAccount(username, request.password, session.ip), done)

    def _login(self, session: Session, request: p.Login) -> None:
        if not self._may_start_auth(session, request.id):
            return
        now = self.now
        # Failed logins count per name and per address (PROTOCOL.md), the same way for both.
        throttles = ((self._name_throttle, throttle_key(request.username)), (self._ip_throttle, session.ip))
        if any(throttle.refused(key, now) for throttle, key in throttles):
            log.info("login throttled for %s from %s", self._loggable(request.username), session.peer)
            return self._error(session, "rate_limited", request.id, "too many failed logins; wait a minute")
        self._start_auth(session)
        # Nothing has failed yet, but enough guesses at this name, or from this address, are
        # being hashed: wait for them. Else a burst of simultaneous guesses would all pass.
        for throttle, key in throttles:
            if throttle.busy(key):
                throttle.waiting.setdefault(key, deque()).append((session, request))
                self.fx.hold(session.sid, True)
                return
        account = self.accounts.get(request.username) if p.valid_username(request.username) else None
        for throttle, key in throttles:
            throttle.begin(key)

        def done(matched: object) -> None:
            self._end_auth(session)
            failed = not (matched is True and account is not None)  # False, or an exception
            if failed:
                log.info("failed login for %s from %s", self._loggable(request.username), session.peer)
                failed_at = self.now
                for throttle, key in throttles:
                    throttle.fail(key, failed_at)
                self._error(session, "bad_credentials", request.id)
            else:
                log.info("login %s from %s", safe(account.username), session.peer)
                self._authenticate(session, account, "login", request.id)
            for throttle, key in throttles:
                throttle.end(key)
            for throttle, key in throttles:  # once both have ended: a waiting login checks both
                self._resume_logins(throttle, key)

        job = VerifyPassword(account.password_hash if account is not None else None, request.password)
        self.fx.submit(session.sid, job, done)

    def _loggable(self, username: str) -> str:
        """The name tried at a login, for the log: only if it is an account's. What is typed
        into the username field is now and then the password."""
        account = self.accounts.get(username) if p.valid_username(username) else None
        return safe(account.username) if account is not None else "a name that is no account"

    def _resume_logins(self, throttle: Throttle, key: str) -> None:
        """Logins that waited for this name or address: start them while there is room,
        refuse them once it has failed too often."""
        waiting = throttle.waiting.get(key, deque())
        now = self.now
        while waiting and (throttle.refused(key, now) or not throttle.busy(key)):
            session, request = waiting.popleft()
            self._end_auth(session)
            self.fx.hold(session.sid, False)
            if session.sid in self.sessions and session.state is State.CONNECTED:
                self._login(session, request)
        if not waiting:
            throttle.waiting.pop(key, None)

    def _may_start_auth(self, session: Session, rid: str | None, refuse: Refusal | None = None) -> bool:
        """Whether a register or login may start now; if not, `refuse` (an error by default)
        answers it."""
        refuse = refuse or self._error
        if session.state is State.AUTHENTICATING:
            refuse(session, "rate_limited", rid, "a register or login is already in progress")
            return False
        if self.pending_auth >= self.config.max_pending_auth:
            refuse(session, "rate_limited", rid, "the server is busy with logins; try again")
            return False
        return True

    def _refuse_registration(self, session: Session, code: str, rid: str | None,
                             message: str | None = None) -> None:
        _log_refused_registration(session, code)
        self._error(session, code, rid, message)

    def _start_auth(self, session: Session) -> None:
        session.state = move(session.state, "auth_started")
        self.pending_auth += 1

    def _end_auth(self, session: Session) -> None:
        session.state = move(session.state, "auth_ended")
        self.pending_auth -= 1

    def _authenticate(self, session: Session, account: Account, op: str, rid: str | None) -> None:
        if session.sid not in self.sessions:
            return  # left while its hash was computed
        if self.accounts.get(account.username) is not account:
            # `clear file` removed it while its hash was computed.
            log.info("%s of %s from %s: the account was removed meanwhile",
                     op, safe(account.username), session.peer)
            return self._error(session, "bad_credentials", rid)
        session.state = move(session.state, "authenticated")
        username = session.username = account.username
        session.account = account
        sid = session.sid
        self.fx.save()  # the history below must reach the message the broadcasts start after
        self.fx.send(sid, p.encode_payload(p.ok(op, username)))
        # The answer to a `history` request with limit history_size (the window holds that many).
        self.fx.send(sid, self._history_frame(*self.history.page(limit=self.config.history_size)))
        key = username.lower()
        first = key not in self.online
        if first:
            self.online[key] = (username, set())
            bisect.insort(self._sorted_online, key)
        self.online[key][1].add(sid)
        self.fx.send(sid, self._users_frame(None))
        if first:
            self.fx.broadcast(p.encode_payload(p.presence("join", username)), urgent=False)
        self.fx.subscribe(sid)
        self.subscribers += 1

    def _say(self, session: Session, request: p.Say) -> None:
        seq = self.next_seq
        ts = p.timestamp(self.wall)
        payload = p.encode_payload(p.message(seq, ts, session.username, request.text, request.id))
        if len(payload) > self.config.max_frame:  # max_frame bounds the payload, whatever the codec
            # Before the flood control: its bucket counts accepted requests (PROTOCOL.md).
            return self._error(session, "bad_request", request.id, "the message would not fit in one frame")
        if self.config.rate_limit and not self._take_token(session):
            return self._error(session, "rate_limited", request.id, "you are sending too fast")
        self.next_seq += 1
        self.fx.persist(Record(seq, ts, session.username, request.text))
        self.fx.broadcast(payload)
        self.messages_in += 1
        self.deliveries += self.subscribers

    def _history(self, session: Session, request: p.History) -> None:
        history, limit, before, after = self.history, request.limit, request.before, request.after
        self.fx.save()
        if history.in_window(limit=limit, before=before, after=after):
            records, more = history.page(limit=limit, before=before, after=after)
            return self._send_history(session, records, more, after is None)
        self.fx.submit(session.sid, ReadPage(limit, before, after),
                       lambda result: self._disk_history(session, request, result, after is None))

    def _send_history(self, session: Session, records: list[Record], more: bool, newest: bool) -> None:
        if session.sid in self.sessions:
            self.fx.send(session.sid, self._history_frame(records, more, keep_newest=newest))

    def _disk_history(self, session: Session, request: p.History, result: object, newest: bool) -> None:
        if isinstance(result, Exception):
            return self._error(session, "bad_request", request.id, "history could not be read")
        self._send_history(session, *result, newest)

    def _users(self, session: Session, request: p.Users) -> None:
        self.fx.send(session.sid, self._users_frame(request.after))

    def _ping(self, session: Session, request: p.Ping) -> None:
        self.fx.send(session.sid, p.encode_payload(p.pong(request.id)))

    def _quit(self, session: Session, request: p.Quit) -> None:
        self.fx.send(session.sid, p.encode_payload(p.bye()))
        self._end(session, "quit")

    _handlers: dict[type, Callable[..., None]] = {
        p.Register: _register, p.Login: _login, p.Say: _say, p.History: _history,
        p.Users: _users, p.Ping: _ping, p.Quit: _quit,
    }

    # -- operator commands ----------------------------------------------------------

    def kick(self, name: str) -> int:
        return self._kick(name.lower(), "removed by the operator", "kicked")

    def end_sessions_without_account(self) -> int:
        """After `clear file`: the sessions of accounts that are gone end (`kicked`), or their
        owners would stay online under names anyone may now register. How many ended."""
        stale = [sid for name, sids in self.online.values() for sid in sids
                 if self.sessions[sid].account is not self.accounts.get(name)]
        return self._kick_sessions(stale, "account removed", "account removed")

    def _kick(self, key: str, reason: str, logged_as: str) -> int:
        """End every session of the lower-cased name `key` with `kicked`; how many ended."""
        entry = self.online.get(key)
        return self._kick_sessions(list(entry[1]), reason, logged_as) if entry is not None else 0

    def _kick_sessions(self, sids: list[int], reason: str, logged_as: str) -> int:
        frame = p.encode_payload(p.kicked(reason))
        for sid in sids:
            self.fx.send(sid, frame)
            self._end(self.sessions[sid], logged_as)
        return len(sids)

    def notice(self, text: str) -> int:
        """The operator's announcement; ValueError, sending nothing, for a text a `say` could not carry."""
        if not p.valid_text(text):
            raise ValueError(f"a notice is {p.TEXT_RULES}")
        self.fx.broadcast(p.encode_payload(p.notice(text)))
        log.info("operator notice to %d session(s): %s", self.subscribers, safe(text))
        return self.subscribers

    def users_table(self) -> list[tuple[str, int, list[str]]]:
        table = []
        for key in self._sorted_online:
            name, sids = self.online[key]
            table.append((name, len(sids), sorted(self.sessions[sid].peer for sid in sids)))
        return table

    def shutdown(self, reason: str) -> None:
        """Every connection gets `shutdown` and closes; nobody is told of the others leaving."""
        frame = p.encode_payload(p.shutdown(reason))
        for session in self.sessions.values():
            self.fx.send(session.sid, frame)
            self.fx.close(session.sid)
            self._per_address.release(session.ip)
            log.info("disconnected %s (shutdown)", _who(session))
        log.info("closed %d connection(s) for shutdown", len(self.sessions))
        self.sessions.clear()
        self.online.clear()
        self._sorted_online.clear()
        self.subscribers = 0

    # -- helpers -------------------------------------------------------------------------

    @property
    def _burst(self) -> float:
        """2R, but at least one message: below R = 0.5 a bucket of 2R never holds a whole
        token, and its session could never speak at all."""
        return max(1.0, 2 * self.config.rate_limit)

    def _take_token(self, session: Session) -> bool:
        now = self.now
        rate = self.config.rate_limit
        session.tokens = min(self._burst, session.tokens + (now - session.refilled) * rate)
        session.refilled = now
        if session.tokens < 1:
            return False
        session.tokens -= 1
        return True

    def _error(self, session: Session, code: str, rid: str | None, message: str | None = None) -> None:
        self.fx.send(session.sid, p.encode_payload(p.error(code, message or p.ERROR_MESSAGES[code], id=rid)))

    def _fatal(self, session: Session, code: str, message: str) -> None:
        self._fatal_to(session.sid, code, message)
        self._end(session, code)

    def _fatal_to(self, sid: int, code: str, message: str) -> None:
        self.fx.send(sid, p.encode_payload(p.error(code, message, fatal=True)))
        self.fx.close(sid)

    def _end(self, session: Session, reason: str) -> None:
        self.fx.close(session.sid)
        self.disconnect(session.sid, reason)

    def _history_frame(self, records: list[Record], more_before: bool,
                       keep_newest: bool = True) -> p.Payload:
        """A `history` frame that fits max_frame, cutting the oldest (or newest) messages if needed."""
        items = [r.as_dict() for r in records]
        if keep_newest:
            items.reverse()

            def build(chosen: list) -> dict:
                return p.history_reply(chosen[::-1], more_before or len(chosen) < len(items))
        else:
            def build(chosen: list) -> dict:
                return p.history_reply(chosen, more_before or len(chosen) < len(items))

        frame, _ = p.fit_items(items, build, self.config.max_frame)
        return p.encode_payload(frame)

    def _users_frame(self, after: str | None) -> p.Payload:
        """`users`: online names after `after`, as many as fit in one frame.

        Sent on every login, so it must not cost a JSON encoding per name: a
        username is ASCII letters, digits and `_.-`, so it takes its length plus
        two quotes and a comma.
        """
        keys = self._sorted_online
        start = bisect.bisect_right(keys, after.lower()) if after is not None else 0
        envelope = len(p.encode_payload(p.users_reply([], len(keys), False)))  # false: the longer flag
        budget = self.config.max_frame - envelope + 1  # the first name has no comma
        names = []
        for key in itertools.islice(keys, start, None):
            name = self.online[key][0]
            budget -= len(name) + 3
            if budget < 0:
                break
            names.append(name)
        return p.encode_payload(p.users_reply(names, len(keys), len(names) < len(keys) - start))

    def status(self) -> dict[str, str]:
        return {
            "sessions": f"{len(self.sessions)} open, {self.subscribers} authenticated, "
                        f"{len(self.online)} users online",
            "messages": f"{self.messages_in} received, {self.deliveries} delivered, "
                        f"last seq {self.next_seq - 1}",
            "logins": f"{self.pending_auth} in progress, {len(self.accounts)} accounts",
        }
