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

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any, Protocol

from netlab import wire as p
from netlab.chat.admission import Admission
from netlab.chat.auth import Auth, log_refused_registration
from netlab.chat.jobs import Announce, Job
from netlab.chat.moderation import Moderation
from netlab.chat.presence import Presence
from netlab.chat.replica import Replica
from netlab.chat.room_requests import RoomRequests, rooms_table
from netlab.chat.rooms import Rooms
from netlab.chat.sessions import Session, State, move, refusal, safe, who
from netlab.chat.talk import Talk
from netlab.peraddress import DEFAULT_MAX_CLIENTS_PER_IP
from netlab.store.records import Account
from netlab.store.room_records import GENERAL, RoomsSnapshot
from netlab.wire import rooms as w

if TYPE_CHECKING:
    from netlab.chat.journal import Journal, Journals
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
    #: Rooms in all, general included. A school's classes or a company's teams and projects
    #: need tens to hundreds; each room costs a file, a broadcast log while in use and its
    #: window of history in memory, so a runaway script must not make a hundred thousand.
    max_rooms: int = 1_000
    #: Rooms one account may create and be in (general not counted): a student's courses and
    #: clubs, a developer's teams and projects, with room to spare; it also bounds what one
    #: login reports and subscribes to.
    max_rooms_per_account: int = 100
    #: Names listed per `users` page (a frame's worth at most too): with --max-frame at 16 MiB
    #: one page could otherwise hold half a million names and cost the loop a whole pass.
    users_page: int = 1_000
    #: `create` and `join` requests a minute per account (a token bucket holding as many, at
    #: least one): joining a term's rooms at once passes, a script creating rooms in a loop
    #: does not. 0 turns it off.
    room_rate: float = 20.0
    #: Direct conversations one account may have (a new one past it is `forbidden`). A class
    #: or a team talks one to one with a few dozen people; at 100 the first `rooms` page
    #: holds them all even in the smallest frame, as PROTOCOL.md wants them there.
    max_conversations: int = 100
    #: Operator consoles open at once on the console socket (`netlab chat console`), a thread
    #: each: a few operators and their scripts; one more is told `busy`.
    max_consoles: int = 4
    #: Bytes of one HTTP request's header block on the web port (431 past it): a browser's
    #: take about 1 KiB; h11 holds no more than this of a request still arriving.
    max_header_bytes: int = 8192
    #: Networks whose peers may read the web port's /metrics besides loopback, which always
    #: may: the figures tell an outsider how busy the chat is and when, so none by default.
    metrics_allow: tuple[IPv4Network | IPv6Network, ...] = ()


class Effects(Protocol):
    """What the chat asks of the loop that runs it."""

    def send(self, sid: int, payload: p.Payload) -> None:
        """Queue a payload for one session (its connection's codec frames it)."""

    def broadcast(self, payload: p.Payload, *, room: str = GENERAL, urgent: bool = True) -> None:
        """Queue a payload for every session subscribed to `room` (framed once per codec in
        use, appended to that room's log).

        Not urgent (presence): it may wait a little for company, so that a
        storm of joins costs the loop a few passes over a large room, not one each.
        """

    def subscribe(self, sid: int, room: str = GENERAL) -> None:
        """From now on this session receives the room's broadcasts (those queued later)."""

    def unsubscribe(self, sid: int, room: str) -> None:
        """No more of that room's broadcasts for this session (it left)."""

    def close(self, sid: int) -> None:
        """Close the session once what is queued for it has gone out."""

    def submit(self, sid: int | None, job: Job, done: Callable[[Any], None]) -> None:
        """Have `job` done off the loop (chat/jobs.py says what each gives); call
        `done(result)` on the loop afterwards. The session is held (see `hold`) until then;
        None: the operator's, no session to hold.

        If the job raises, `done` gets the exception as its result.
        """

    def hold(self, sid: int, held: bool) -> None:
        """Keep the session's next requests waiting (True), or let them through again.

        A session's requests are answered one at a time, in order: one that waits
        (for a hash, a disk read, a throttle) holds back those sent after it.
        """


class Chat:
    """The chat state machine. Every method runs on the loop thread."""

    def __init__(self, config: ChatConfig, accounts: Accounts, journals: Journals, effects: Effects,
                 rooms: RoomsSnapshot | None = None) -> None:
        self.config = config
        self.accounts = accounts
        self.journals = journals
        self.fx = effects
        #: The loop's clocks as of its current pass (`advance`): monotonic for every deadline,
        #: bucket and throttle, so a clock step changes none of them; wall time only for `ts`.
        self.now = 0.0
        self.wall = 0.0
        self.sessions: dict[int, Session] = {}
        self.presence = Presence(config.max_frame)
        self.rooms = Rooms(rooms if rooms is not None else RoomsSnapshot())
        self.admission = Admission(self)
        #: `connect` (counted against the limits, a web one plain HTTP until `upgraded`), `expire`
        #: (the auth deadlines): chat/admission.py
        self.connect, self.upgraded, self.expire = self.admission.connect, self.admission.upgraded, \
            self.admission.expire
        self.http = self.admission.http  # web connections not upgraded: plain HTTP, not sessions
        self.auth = Auth(config, accounts, effects, self.sessions, lambda: self.now, self.error,
                         self._authenticate)
        self.talk = Talk(self, rooms.say_ids if rooms is not None else None)
        self.room_requests = RoomRequests(self)
        #: The operator's `rooms` (room, kind, owner, members, online, last seq) and `topic ROOM
        #: TEXT` (by "operator", once on disk; ValueError for a bad text or room): chat/room_requests.py
        self.set_topic = self.room_requests.set_topic
        self.rooms_table = functools.partial(rooms_table, self)
        self.moderation = Moderation(self, rooms.restrictions if rooms is not None else [])
        self.kick = self.moderation.kick
        self._handlers: dict[type, Callable[[Session, Any], None]] = {
            p.Register: self.auth.register, p.Login: self.auth.login, p.Ping: self._ping, p.Quit: self._quit,
            w.Password: self.auth.change_password, **self.talk.handlers(), **self.room_requests.handlers(),
        }
        #: Bus mode: another node's changes applied here (chat/replica.py), and `announce`,
        #: told (account id, online) when this node's first session of an account begins or
        #: its last one ends, for the other nodes.
        self.replica = Replica(self)
        self.announce: Callable[[str, bool], None] | None = None
        self.messages_in = 0
        self.deliveries = 0
        self.subscribers = 0
        self._welcome = p.encode_payload(p.welcome(config.max_frame))

    @property
    def journal(self) -> Journal:
        """General's journal (history.csv): version 1's one room."""
        return self.journals.journal(GENERAL)

    def advance(self, now: float, wall: float) -> None:
        """The time, as the loop tells it at each pass: `now` monotonic, `wall` the epoch."""
        self.now = now
        self.wall = wall

    # -- connections ----------------------------------------------------------

    def disconnect(self, sid: int, reason: str) -> None:
        """The connection is gone (or going): forget the session, tell the others."""
        if self.admission.end_http(sid, reason):
            return
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        self.admission.per_address.release(session.ip)
        log.info("disconnected %s (%s)", who(session), reason)
        if session.state is not State.AUTHENTICATED:
            return
        self.subscribers -= 1
        name = self.presence.depart(session.username, sid)
        if self.announce is not None and not self.presence.sessions_of(session.username):
            self.announce(session.account.id, False)
        if name is not None:
            self.rooms.went_offline(session.account.id, name.lower(), self.now)
            self.fx.broadcast(p.encode_payload(p.presence("leave", name)), urgent=False)

    # -- frames from clients -----------------------------------------------------

    def receive(self, sid: int, frame: dict) -> None:
        """One decoded frame from a client."""
        session = self.sessions.get(sid)
        if session is None:
            return
        kind = frame["type"]
        refused = refusal(session.state, kind)
        if refused is not None:
            return self.error(session, refused, p.request_id(frame))
        try:
            request = w.parse(frame, session.version)
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

    def _authenticate(self, session: Session, account: Account, op: str, rid: str | None,
                      protocol: int = 1) -> None:
        if session.sid not in self.sessions:
            return  # left while its hash was computed
        if self.accounts.get(account.username) is not account:
            # `clear file` removed it while its hash was computed.
            log.info("%s of %s from %s: the account was removed meanwhile",
                     op, safe(account.username), session.peer)
            return self.error(session, "bad_credentials", rid)
        if self.moderation.turned_away(session, account, op):  # only now, the password verified
            return
        session.state = move(session.state, "authenticated")
        username = session.username = account.username
        session.account, session.version = account, protocol
        sid = session.sid
        self.fx.send(sid, p.encode_payload(p.ok(op, username, protocol)))
        self.talk.send_history(session, p.History(self.config.history_size), GENERAL,
                               self.talk.home(session), at_login=True)
        first = self.presence.arrive(username, sid)
        if self.announce is not None and len(self.presence.sessions_of(username)) == 1:
            self.announce(account.id, True)
        self.talk.send_users(session, p.Users())
        if first:
            self.rooms.came_online(account.id, username.lower())
            self.fx.broadcast(p.encode_payload(p.presence("join", username)), urgent=False)
        self.fx.subscribe(sid)
        self.subscribers += 1
        if protocol >= 2:
            for room in self.rooms.rooms_of(account.id):
                self.fx.subscribe(sid, room)
            self.room_requests.send_rooms(session, w.Rooms())

    def _ping(self, session: Session, request: p.Ping) -> None:
        self.fx.send(session.sid, p.encode_payload(p.pong(request.id)))

    def _quit(self, session: Session, request: p.Quit) -> None:
        self.fx.send(session.sid, p.encode_payload(p.bye()))
        self._end(session, "quit")

    def broadcast(self, payload: p.Payload, room: str) -> None:
        """A frame to a room's log; general's is the default one (version 1's single log)."""
        if room == GENERAL:
            self.fx.broadcast(payload)
        else:
            self.fx.broadcast(payload, room=room)

    def tell_v2(self, payload: p.Payload) -> None:
        """A version 2 frame about general (a topic, a deletion: rare) to each version 2 session."""
        for session in self.sessions.values():
            if session.version >= 2 and session.state is State.AUTHENTICATED:
                self.fx.send(session.sid, payload)

    def v2_sessions(self, username: str) -> list[int]:
        """The version 2 sessions of an account (those told of its rooms and conversations)."""
        return [sid for sid in self.presence.sessions_of(username) if self.sessions[sid].version >= 2]

    # -- operator commands ----------------------------------------------------------

    def end_sessions_without_account(self) -> int:
        """After `clear file`: the sessions of accounts that are gone end (`kicked`), or their
        owners would stay online under names anyone may now register. How many ended."""
        stale = [sid for name, sids in self.presence.users() for sid in sids
                 if self.sessions[sid].account is not self.accounts.get(name)]
        return self.end_sessions(stale, p.kicked("account removed"), "account removed")

    def end_sessions(self, sids: list[int], frame: dict, logged_as: str) -> int:
        """End these sessions with a last frame (`kicked`, a fatal error); how many ended."""
        payload = p.encode_payload(frame)
        for sid in sids:
            self.fx.send(sid, payload)
            self._end(self.sessions[sid], logged_as)
        return len(sids)

    def notice(self, text: str, everywhere: bool = True) -> int:
        """The operator's announcement; ValueError, sending nothing, for a text a `say` could not
        carry. How many sessions of this node it reached; in bus mode the other nodes' are told
        too (`everywhere` False: this is another node's notice, arriving)."""
        if not p.valid_text(text):
            raise ValueError(f"a notice is {p.TEXT_RULES}")
        self.fx.broadcast(p.encode_payload(p.notice(text)))
        log.info("operator notice to %d session(s): %s", self.subscribers, safe(text))
        if everywhere and self.journal.shared:
            self.fx.submit(None, Announce("notice", text), self._announced)
        return self.subscribers

    @staticmethod
    def _announced(result: object) -> None:
        if isinstance(result, Exception):
            log.error("the other nodes were not told (the bus is away): %s", result)

    def users_table(self, address: Callable[[int], str]) -> list[tuple[str, int, list[str]]]:
        """The operator's `users`, each session named by `address` (the loop's: HOST:PORT in
        clear, which the chat never holds, as its log lines name a session by its tag)."""
        return self.presence.table(address)

    def shutdown(self, reason: str) -> None:
        """Every connection gets `shutdown` and closes; nobody is told of the others leaving."""
        frame = p.encode_payload(p.shutdown(reason))
        for session in self.sessions.values():
            self.fx.send(session.sid, frame)
            self.fx.close(session.sid)
            self.admission.per_address.release(session.ip)
            log.info("disconnected %s (shutdown)", who(session))
        self.admission.shutdown(frame)
        log.info("closed %d connection(s) for shutdown", len(self.sessions))
        self.sessions.clear()
        self.presence.clear()
        self.subscribers = 0

    # -- helpers -------------------------------------------------------------------------

    def error(self, session: Session, code: str, rid: str | None, message: str | None = None) -> None:
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
            "web http": f"{len(self.http)} connections not upgraded (not sessions)",
            "messages": f"{self.messages_in} received, {self.deliveries} delivered, "
                        f"last seq {self.journal.last_seq}",
            "logins": f"{self.auth.pending_auth} in progress, {len(self.accounts)} accounts",
            **self.moderation.status(),
        }
