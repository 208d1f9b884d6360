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

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from netlab import wire as p
from netlab.chat.auth import Auth, log_refused_registration
from netlab.chat.jobs import Job, ReadPage
from netlab.chat.journal import Journal
from netlab.chat.presence import Presence
from netlab.chat.sessions import Session, State, move, refusal, safe, who
from netlab.peraddress import DEFAULT_MAX_CLIENTS_PER_IP, AddressLimit
from netlab.store.records import Account, Record

if TYPE_CHECKING:
    from netlab.store.accounts import Accounts

log = logging.getLogger("netlab.chat")  # netlab.logs sets up the handlers; it is not sans-IO


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
    #: The same for each other room, while in use: a room idle for a minute keeps none
    #: (loop/group_commit.py), so the total is this times the rooms in use.
    room_window: int = 500
    #: The same for each direct conversation in use (direct.dat's index: 12 bytes a message).
    direct_window: int = 100
    #: Registrations and logins queued for a password hash or hashing; more
    #: get `rate_limited` instead of an unbounded queue. A queued one costs a
    #: few hundred bytes (only the running ones hold Argon2's 19 MiB), and at
    #: about 25 ms a hash the last of 1,024 waits some 13 s on two cores,
    #: inside the default auth timeout.
    max_pending_auth: int = 1024


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


def history_page(records: list[Record], more_before: bool, max_frame: int,
                 keep_newest: bool = True) -> p.Payload:
    """A `history` payload that fits max_frame, cutting the oldest (or newest) messages if needed."""
    items = [r.as_dict() for r in records]
    if keep_newest:
        items.reverse()

        def build(chosen: list) -> dict:
            return p.history_reply(chosen[::-1], more_before or len(chosen) < len(items))
    else:
        def build(chosen: list) -> dict:
            return p.history_reply(chosen, more_before or len(chosen) < len(items))

    frame, _ = p.fit_items(items, build, max_frame)
    return p.encode_payload(frame)


class Chat:
    """The chat state machine. Every method runs on the loop thread."""

    def __init__(self, config: ChatConfig, accounts: Accounts, journal: Journal, effects: Effects) -> None:
        self.config = config
        self.accounts = accounts
        self.journal = journal
        self.fx = effects
        #: The loop's clocks as of its current pass (`advance`): monotonic for every deadline,
        #: bucket and throttle, so a clock step changes none of them; wall time only for `ts`.
        self.now = 0.0
        self.wall = 0.0
        self.sessions: dict[int, Session] = {}
        self.presence = Presence(config.max_frame)
        self._deadlines: deque[tuple[float, int]] = deque()  # auth deadlines, in accept order
        self._per_address = AddressLimit(config.max_clients_per_ip, log)
        self.auth = Auth(config, accounts, effects, self.sessions, lambda: self.now, self._error,
                         self._authenticate)
        self._handlers: dict[type, Callable[[Session, Any], None]] = {
            p.Register: self.auth.register, p.Login: self.auth.login, p.Say: self._say,
            p.History: self._history, p.Users: self._users, p.Ping: self._ping, p.Quit: self._quit,
        }
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
        self.sessions[sid] = Session(sid, peer, ip, now, self.config.rate_limit)
        self._deadlines.append((now + self.config.auth_timeout, sid))
        log.info("connected %s", peer)
        self.fx.send(sid, self._welcome)

    def disconnect(self, sid: int, reason: str) -> None:
        """The connection is gone (or going): forget the session, tell the others."""
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        self._per_address.release(session.ip)
        log.info("disconnected %s (%s)", who(session), reason)
        if session.state is not State.AUTHENTICATED:
            return
        self.subscribers -= 1
        name = self.presence.depart(session.username, sid)
        if name is not None:
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
                log_refused_registration(session, exc.code)
            self.fx.send(sid, p.encode_payload(exc.to_frame()))
            return
        self._handlers[type(request)](session, request)

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
        self.fx.send(sid, p.encode_payload(p.ok(op, username)))
        # The answer to a `history` request with limit history_size (the window holds that many).
        records, more = self.journal.page(limit=self.config.history_size)
        self.fx.send(sid, history_page(records, more, self.config.max_frame))
        first = self.presence.arrive(username, sid)
        self.fx.send(sid, self.presence.page(None))
        if first:
            self.fx.broadcast(p.encode_payload(p.presence("join", username)), urgent=False)
        self.fx.subscribe(sid)
        self.subscribers += 1

    def _say(self, session: Session, request: p.Say) -> None:
        seq = self.journal.last_seq + 1
        ts = p.timestamp(self.wall)
        payload = p.encode_payload(p.message(seq, ts, session.username, request.text, request.id))
        if len(payload) > self.config.max_frame:  # max_frame bounds the payload, whatever the codec
            # Before the flood control: its bucket counts accepted requests (PROTOCOL.md).
            return self._error(session, "bad_request", request.id, "the message would not fit in one frame")
        if self.config.rate_limit and not session.take_token(self.now):
            return self._error(session, "rate_limited", request.id, "you are sending too fast")
        self.journal.stage(Record(seq, ts, session.username, request.text))
        self.fx.broadcast(payload)
        self.messages_in += 1
        self.deliveries += self.subscribers

    def _history(self, session: Session, request: p.History) -> None:
        history, limit, before, after = self.journal, request.limit, request.before, request.after
        if history.in_window(limit=limit, before=before, after=after):
            records, more = history.page(limit=limit, before=before, after=after)
            return self._send_history(session, records, more, after is None)
        self.fx.submit(session.sid, ReadPage(limit, before, after),
                       lambda result: self._disk_history(session, request, result, after is None))

    def _send_history(self, session: Session, records: list[Record], more: bool, newest: bool) -> None:
        if session.sid in self.sessions:
            self.fx.send(session.sid, history_page(records, more, self.config.max_frame, keep_newest=newest))

    def _disk_history(self, session: Session, request: p.History, result: object, newest: bool) -> None:
        if isinstance(result, Exception):
            return self._error(session, "bad_request", request.id, "history could not be read")
        self._send_history(session, *result, newest)

    def _users(self, session: Session, request: p.Users) -> None:
        self.fx.send(session.sid, self.presence.page(request.after))

    def _ping(self, session: Session, request: p.Ping) -> None:
        self.fx.send(session.sid, p.encode_payload(p.pong(request.id)))

    def _quit(self, session: Session, request: p.Quit) -> None:
        self.fx.send(session.sid, p.encode_payload(p.bye()))
        self._end(session, "quit")

    # -- operator commands ----------------------------------------------------------

    def kick(self, name: str) -> int:
        """End every session of `name` with `kicked`; how many ended."""
        return self._kick_sessions(self.presence.sessions_of(name), "removed by the operator", "kicked")

    def end_sessions_without_account(self) -> int:
        """After `clear file`: the sessions of accounts that are gone end (`kicked`), or their
        owners would stay online under names anyone may now register. How many ended."""
        stale = [sid for name, sids in self.presence.users() for sid in sids
                 if self.sessions[sid].account is not self.accounts.get(name)]
        return self._kick_sessions(stale, "account removed", "account removed")

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
        return self.presence.table(lambda sid: self.sessions[sid].peer)

    def shutdown(self, reason: str) -> None:
        """Every connection gets `shutdown` and closes; nobody is told of the others leaving."""
        frame = p.encode_payload(p.shutdown(reason))
        for session in self.sessions.values():
            self.fx.send(session.sid, frame)
            self.fx.close(session.sid)
            self._per_address.release(session.ip)
            log.info("disconnected %s (shutdown)", who(session))
        log.info("closed %d connection(s) for shutdown", len(self.sessions))
        self.sessions.clear()
        self.presence.clear()
        self.subscribers = 0

    # -- helpers -------------------------------------------------------------------------

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

    def status(self) -> dict[str, str]:
        return {
            "sessions": f"{len(self.sessions)} open, {self.subscribers} authenticated, "
                        f"{len(self.presence)} users online",
            "messages": f"{self.messages_in} received, {self.deliveries} delivered, "
                        f"last seq {self.journal.last_seq}",
            "logins": f"{self.auth.pending_auth} in progress, {len(self.accounts)} accounts",
        }
