"""`Chat` under random sequences of requests, against a small model of PROTOCOL.md.

A hypothesis state machine opens up to six connections, registers and logs in as three
names in several spellings, says, pages history and users, pings, quits, drops, kicks,
announces and lets time pass on a fake clock. Hashes and disk reads wait until a rule
finishes them, in any order, as the loop's worker threads would. After every step each
connection must have received exactly the frames the model expects, in order.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chat_fakes import CHEAP, PASSWORD, Recorder, open_accounts
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from netlab import wire as p
from netlab.chat import auth as chat_auth
from netlab.chat.jobs import ReadPage
from netlab.chat_core import Chat, ChatConfig
from netlab.loop import jobs
from netlab.store.accounts import Accounts
from netlab.store.history import History
from netlab.store.records import Record

#: Small limits, so that the machine reaches them: a full server, flood control, history
#: pages read from disk (the window holds three messages) and cut by `limit` or by the
#: frame (four of the longest messages do not fit in the smallest one).
CONFIG = ChatConfig(max_clients=5, rate_limit=1.0, history_size=4, history_window=3,
                    max_frame=p.MIN_MAX_FRAME)
MAX_CONNECTIONS = 6  # open at once, one more than max_clients
START = 1_800_000_000.0
NAMES = ["Ann", "ann", "ANN", "Bob", "bOB", "Cy"]
BAD_NAMES = ["", "a b", "x" * 33]
WRONG = "wrong password"
IPS = ["10.0.0.1", "10.0.0.2"]
TEXTS = ["hi", "Grüße 😀", "tab\tand\r\nnewline", " padded ", "x" * 4000]
BAD_TEXTS: list[Any] = ["", " \n\t", "nul\x00", "bell\x07", "x" * 4001, 42, None]  # None: missing
#: `id`s of a ping: the valid ones are echoed, the others are bad_request without an id.
PING_IDS: list[Any] = [None, "", "p", "ü" * 64, "x" * 65, 7]
#: Which session (or job) a rule takes: an index into those it may take, modulo their number.
PICK = st.integers(0, MAX_CONNECTIONS - 1)
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

Expected = dict | Callable[[dict], None]


class Loop(Recorder):
    """A Recorder that also delivers as the chat loop does.

    Each connection gets its frames in order and the broadcasts queued between its
    `subscribe` and its close, nothing after a close or a drop. Work waits in `jobs`
    until the test finishes it, the session held meanwhile.
    """

    def __init__(self, history: History, accounts: Accounts) -> None:
        super().__init__(history, accounts)
        self.inbox: dict[int, list[dict]] = {}
        self.open: set[int] = set()
        self.readers: set[int] = set()
        self.held: set[int] = set()
        self.jobs: list[tuple[int, Callable[[], Any], Callable[[Any], None], bool]] = []

    def accept(self, sid: int) -> None:
        self.open.add(sid)
        self.inbox[sid] = []

    def drop(self, sid: int) -> None:
        self.open.discard(sid)
        self.readers.discard(sid)

    def send(self, sid: int, data: bytes) -> None:
        super().send(sid, data)
        if sid in self.open:
            self.inbox[sid].append(self.sent[sid][-1])

    def broadcast(self, data: bytes, *, room: str = "general", urgent: bool = True) -> None:
        super().broadcast(data, room=room, urgent=urgent)
        frame = self.broadcasts[-1]
        if frame["type"] == "message":
            kept = self.persisted[-1].as_dict() if self.persisted else None
            assert kept == {k: frame[k] for k in ("seq", "ts", "from", "text")}, "not persisted first"
        for sid in self.readers:
            self.inbox[sid].append(frame)

    def subscribe(self, sid: int, room: str = "general") -> None:
        super().subscribe(sid, room)
        if sid in self.open:
            self.readers.add(sid)

    def close(self, sid: int) -> None:
        super().close(sid)
        self.drop(sid)

    def submit(self, sid: int, job, done) -> None:
        self.hold(sid, True)
        self.jobs.append((sid, lambda: self.run(job), done, isinstance(job, ReadPage)))

    def hold(self, sid: int, held: bool) -> None:
        if held:
            self.held.add(sid)
        else:
            self.held.discard(sid)

    def finish(self, index: int) -> None:
        """One job's work, then its `done` on the loop, then the session goes on."""
        sid, work, done, _disk = self.jobs.pop(index)
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - handed to `done`, as the loop does
            result = exc
        done(result)
        self.hold(sid, False)


@dataclass
class Conn:
    """A connection as the model sees it."""

    sid: int
    ip: str
    since: float
    tokens: float
    refilled: float
    user: str | None = None  # lower-cased name, once authenticated
    auth: tuple | None = None  # ("register" | "login", username, password, id) unanswered
    history: tuple | None = None  # (limit, before, after) read from disk, unanswered


@dataclass
class Job:
    """A job the model knows the chat submitted, and what it stands for."""

    kind: str  # "register", "login" or "history"
    conn: Conn
    request: tuple
    account: tuple[str, str] | None = None  # a login's account when submitted: (name, password)


def throttle_key(name: str) -> str:
    return name.lower() if name not in BAD_NAMES else "#" + name.lower()


def ided(rid: Any) -> dict:
    """The `id` member of a request or of its answer, if any."""
    return {} if rid is None else {"id": rid}


def observed(frame: dict) -> dict:
    """A frame without its human-readable text, which the contract does not fix."""
    frame = dict(frame)
    text_member = {"error": "message", "kicked": "reason"}.get(frame["type"])
    if text_member:
        text = frame.pop(text_member)
        assert isinstance(text, str) and text, frame
    return frame


def history_answer(messages: list[dict], limit: int, before: int | None, after: int | None) -> Callable:
    """A check of a `history` frame: the right end of the right run, cut only to fit a frame."""
    if after is not None:
        run = [m for m in messages if m["seq"] > after]
        want, more = run[:limit], len(run) > limit
    else:
        run = [m for m in messages if before is None or m["seq"] < before]
        want, more = run[-limit:], len(run) > limit

    def check(frame: dict) -> None:
        assert frame["type"] == "history" and set(frame) == {"type", "messages", "more"}, frame
        got = frame["messages"]
        n = len(got)
        assert n >= min(1, len(want)), "an empty page though messages exist"
        kept = want[:n] if after is not None else want[len(want) - n:]
        assert got == kept, f"history {got} is not {kept} (limit {limit}, before {before}, after {after})"
        assert frame["more"] == (more or n < len(want)), f"more is wrong: {frame['more']}"
        assert len(p.encode_payload(frame)) <= CONFIG.max_frame
        if n < len(want):  # cut: one more message would not have fitted
            bigger = want[:n + 1] if after is not None else want[len(want) - n - 1:]
            size = len(p.encode_payload(p.history_reply(bigger, more or n + 1 < len(want))))
            assert size > CONFIG.max_frame, "history cut shorter than a frame allows"

    return check


class ChatMachine(RuleBasedStateMachine):
    """One `Chat`, its loop faked by `Loop`, and the model: who is connected, signed in and
    online, which accounts exist, what was said, which logins failed when."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="netlab-stateful-"))
        self.now = START
        self.conns: dict[int, Conn] = {}  # open, as far as the chat knows
        self.next_sid = 1
        self.registered: dict[str, tuple[str, str]] = {}  # lower-cased -> (name, password)
        self.reserved: set[str] = set()  # registrations being hashed
        self.online: dict[str, tuple[str, set[int]]] = {}  # lower-cased -> (name, sids)
        self.messages: list[dict] = []  # {seq, ts, from, text}, as broadcast
        self.failures: dict[str, list[float]] = {}  # failed logins per name key and per IP
        self.jobs: list[Job] = []  # parallel to self.fx.jobs
        self.ids = 0
        # What the current step should produce; what was seen before it.
        self.expected: dict[int, list[Expected]] = {}
        self.expected_closes: list[int] = []
        self.seen: dict[int, int] = {}
        self.closes_seen = 0
        self.broadcasts_seen = 0

    @initialize(earlier=st.lists(st.sampled_from(TEXTS), max_size=5), first_seq=st.sampled_from([1, 7]),
                signed_in=st.lists(st.sampled_from(["Ann", "ann", "bOB", "Cy"]), max_size=3))
    def start(self, earlier: list[str], first_seq: int, signed_in: list[str]) -> None:
        """A server whose history.csv holds messages from an earlier run, one account, and
        sessions already signed in (through the rules, so checked as any step)."""
        self.history = History.open(self.dir / "history.csv", window=CONFIG.history_window)
        records = [Record(first_seq + n, "2026-11-23T19:57:28.962Z", "Old", text)
                   for n, text in enumerate(earlier)]
        self.history.append(records)
        self.messages = [r.as_dict() for r in records]
        self.accounts = open_accounts(self.dir, environ={})
        self.accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
        self.registered["ann"] = ("Ann", PASSWORD)
        self.fx = Loop(self.history, self.accounts)
        self.chat = Chat(CONFIG, self.accounts, self.fx, self.fx)
        self.chat.advance(self.now, self.now)  # one fake clock for both: the monotonic and the wall
        for name in signed_in:
            self.connect(IPS[0])
            if name.lower() in self.registered:
                self.login(-1, name, right=True, with_id=False)
            else:
                self.register(-1, name, PASSWORD, with_id=False)
            while self.jobs:
                self.finish_job(0)

    def teardown(self) -> None:
        if hasattr(self, "history"):
            self.history.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the step: act, then compare what everyone received with the model ----------------

    def begin(self) -> None:
        self.expected = {}
        self.expected_closes = []

    def expect(self, sid: int, frame: Expected) -> None:
        self.expected.setdefault(sid, []).append(frame)

    def expect_error(self, sid: int, code: str, rid: Any = None, *, fatal: bool = False) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code}
        if fatal:
            frame["fatal"] = True
        if rid is not None:
            frame["id"] = rid
        self.expect(sid, frame)

    def new_broadcasts(self) -> list[dict]:
        return self.fx.broadcasts[self.broadcasts_seen:]

    def settle(self) -> None:
        """The end of a loop pass: history saved, then every inbox checked."""
        self.fx.save()
        for sid, inbox in self.fx.inbox.items():
            got = [observed(f) for f in inbox[self.seen.get(sid, 0):]]
            want = self.expected.get(sid, [])
            assert len(got) == len(want), f"session {sid} got {got}, expected {want}"
            for frame, expected in zip(got, want, strict=True):
                if callable(expected):
                    expected(frame)
                else:
                    assert frame == expected, f"session {sid} got {frame}, expected {expected}"
            self.seen[sid] = len(inbox)
        closes = self.fx.closed[self.closes_seen:]
        # A fatal error closes twice (its frame's own close, then the end of the session):
        # the loop's close is idempotent, so only which sessions close counts.
        assert set(closes) == set(self.expected_closes), f"closed {closes}"
        self.closes_seen = len(self.fx.closed)
        self.broadcasts_seen = len(self.fx.broadcasts)
        assert len(self.fx.jobs) == len(self.jobs), "work submitted that no request asked for"

    def to_readers(self, frame: dict) -> None:
        for sid in self.readers():
            self.expect(sid, frame)

    def readers(self) -> list[int]:
        return [c.sid for c in self.conns.values() if c.user is not None]

    def users_frame(self, after: str | None) -> dict:
        names = sorted((name for name, _ in self.online.values()), key=str.lower)
        shown = [n for n in names if after is None or n.lower() > after.lower()]
        return {"type": "users", "online": shown, "count": len(names), "more": False}

    def end(self, conn: Conn, *, closed: bool = True) -> None:
        """A session is over: `leave` for the others if it was its user's last."""
        del self.conns[conn.sid]
        if closed:
            self.expected_closes.append(conn.sid)
        if conn.user is not None:
            name, sids = self.online[conn.user]
            sids.discard(conn.sid)
            if not sids:
                del self.online[conn.user]
                self.to_readers({"type": "leave", "username": name})

    def authenticate(self, conn: Conn, name: str, op: str) -> None:
        key = name.lower()
        others = self.readers()
        conn.user = key
        self.online.setdefault(key, (name, set()))[1].add(conn.sid)
        self.expect(conn.sid, {"type": "ok", "op": op, "username": name, "protocol": 1})
        self.expect(conn.sid, history_answer(list(self.messages), CONFIG.history_size, None, None))
        self.expect(conn.sid, self.users_frame(None))
        if len(self.online[key][1]) == 1:
            for sid in others:
                self.expect(sid, {"type": "join", "username": name})

    def refused(self, key: str) -> bool:
        times = [t for t in self.failures.get(key, []) if t > self.now - chat_auth.LOGIN_WINDOW]
        self.failures[key] = times
        limit = chat_auth.MAX_FAILURES_PER_NAME if key not in IPS else chat_auth.MAX_FAILURES_PER_IP
        return len(times) >= limit

    def busy(self, key: str) -> bool:
        """Would the name (or address) pass its limit were all its logins being hashed to
        fail? (after `refused`)"""
        in_flight = sum(1 for job in self.jobs if job.kind == "login"
                        and key in (job.conn.ip if key in IPS else throttle_key(job.request[1]),))
        limit = chat_auth.MAX_FAILURES_PER_NAME if key not in IPS else chat_auth.MAX_FAILURES_PER_IP
        return len(self.failures.get(key, [])) + in_flight >= limit

    def adopt_jobs(self) -> list[Job]:
        """Name the jobs the chat submitted in this step: a session's register, login or page."""
        adopted = []
        for sid, _work, _done, disk in self.fx.jobs[len(self.jobs):]:
            conn = self.conns[sid]
            if disk:
                assert conn.history is not None, f"session {sid}: a disk read nobody asked for"
                job = Job("history", conn, conn.history)
            else:
                assert conn.auth is not None, f"session {sid}: a hash nobody asked for"
                kind, name = conn.auth[0], conn.auth[1]
                account = self.registered.get(name.lower()) if kind == "login" else None
                job = Job(kind, conn, conn.auth, account)
            self.jobs.append(job)
            adopted.append(job)
        return adopted

    def waiting_logins(self) -> list[Conn]:
        """Logins held back, unhashed, behind others of their name (docs/design.md)."""
        busy = {job.conn.sid for job in self.jobs}
        return [c for c in self.conns.values() if c.auth is not None and c.sid not in busy]

    def idle(self) -> list[int]:
        busy = {job.conn.sid for job in self.jobs}
        return sorted(c.sid for c in self.conns.values() if c.auth is None and c.sid not in busy)

    def signed_in_idle(self) -> list[int]:
        return [sid for sid in self.idle() if self.conns[sid].user is not None]

    def signed_out_idle(self) -> list[int]:
        return [sid for sid in self.idle() if self.conns[sid].user is None]

    def request(self, pick: int, frame: dict, among: list[int] | None = None) -> Conn:
        """Send a frame on an idle connection (the loop hands a held one nothing)."""
        idle = among or self.idle()
        sid = idle[pick % len(idle)]
        self.begin()
        self.chat.receive(sid, frame)
        return self.conns[sid]

    def rid(self, with_id: bool) -> str | None:
        self.ids += 1
        return f"r{self.ids}" if with_id else None

    # -- rules --------------------------------------------------------------------------

    @precondition(lambda self: len(self.fx.open) < MAX_CONNECTIONS)
    @rule(ip=st.sampled_from(IPS))
    def connect(self, ip: str) -> None:
        sid, self.next_sid = self.next_sid, self.next_sid + 1
        self.begin()
        self.fx.accept(sid)
        self.chat.connect(sid, f"{ip}:{40000 + sid}", ip, self.now)
        if len(self.conns) >= CONFIG.max_clients:
            self.expect_error(sid, "server_full", fatal=True)
            self.expected_closes.append(sid)
        else:
            self.conns[sid] = Conn(sid, ip, self.now, tokens=2.0, refilled=self.now)
            self.expect(sid, {"type": "welcome", "server": "netlab", "protocol": 1,
                              "max_frame": CONFIG.max_frame, "versions": [1, 2]})
        self.settle()

    @precondition(lambda self: self.idle())
    @rule(pick=PICK, name=st.sampled_from(NAMES + BAD_NAMES),
          password=st.sampled_from([PASSWORD, "battery staple", "short"]), with_id=st.booleans())
    def register(self, pick: int, name: str, password: str, with_id: bool) -> None:
        rid = self.rid(with_id)
        conn = self.request(pick, {"type": "register", "username": name, "password": password,
                                   **ided(rid)})
        key = name.lower()
        if conn.user is not None:
            self.expect_error(conn.sid, "already_authenticated", rid)
        elif name in BAD_NAMES:
            self.expect_error(conn.sid, "invalid_username", rid)
        elif password == "short":
            self.expect_error(conn.sid, "invalid_password", rid)
        elif key in self.registered or key in self.reserved:
            self.expect_error(conn.sid, "username_taken", rid)
        else:
            self.reserved.add(key)
            conn.auth = ("register", name, password, rid)
            assert [job.kind for job in self.adopt_jobs()] == ["register"]
        self.settle()

    @precondition(lambda self: self.idle())
    @rule(pick=PICK, name=st.sampled_from(NAMES + BAD_NAMES), right=st.booleans(),
          with_id=st.booleans())
    def login(self, pick: int, name: str, right: bool, with_id: bool,
              among: list[int] | None = None) -> None:
        rid = self.rid(with_id)
        account = self.registered.get(name.lower())
        password = (account[1] if account else PASSWORD) if right else WRONG
        conn = self.request(pick, {"type": "login", "username": name, "password": password,
                                   **ided(rid)}, among)
        key = throttle_key(name)
        if conn.user is not None:
            self.expect_error(conn.sid, "already_authenticated", rid)
        elif self.refused(key) or self.refused(conn.ip):
            self.expect_error(conn.sid, "rate_limited", rid)
        else:
            busy = self.busy(key) or self.busy(conn.ip)
            conn.auth = ("login", name, password, rid)
            adopted = self.adopt_jobs()
            if busy:  # it waits for those in flight, held
                assert not adopted and conn.sid in self.fx.held, "a login past the in-flight limit"
            else:
                assert [job.kind for job in adopted] == ["login"]
        self.settle()

    @precondition(lambda self: self.signed_out_idle())
    @rule(pick=PICK, name=st.sampled_from(["Ann", "ann", "Bob", "a b"]), with_id=st.booleans())
    def guess(self, pick: int, name: str, with_id: bool) -> None:
        """A wrong password from a session not signed in: failed logins pile up, per name
        (case-insensitively) and per address, so throttled and waiting logins happen."""
        self.login(pick, name, False, with_id, self.signed_out_idle())

    @precondition(lambda self: len(self.conns) < CONFIG.max_clients)
    @rule(name=st.sampled_from(["Ann", "ann", "Bob"]), rights=st.lists(st.booleans(), min_size=2, max_size=4))
    def crowd(self, name: str, rights: list[bool]) -> None:
        """Several devices log in as one name at once, before any hash ends: logins in flight
        count against the failed-login limit, and those past it wait (docs/design.md)."""
        for n, right in enumerate(rights):
            if len(self.conns) >= CONFIG.max_clients:
                break
            self.connect(IPS[n % 2])
            self.login(-1, name, right, with_id=True)

    @precondition(lambda self: self.fx.jobs)
    @rule(pick=PICK)
    def finish_job(self, pick: int) -> None:
        """A hash or a disk read ends (any of them: the pool runs them side by side)."""
        index = pick % len(self.jobs)
        job = self.jobs.pop(index)
        conn, live = job.conn, job.conn.sid in self.conns
        self.begin()
        self.fx.finish(index)
        if job.kind == "history":
            conn.history = None
            if live:
                self.expect(conn.sid, history_answer(self.messages, *job.request))
        elif job.kind == "register":
            _, name, password, _rid = job.request
            self.reserved.discard(name.lower())
            self.registered[name.lower()] = (name, password)
            conn.auth = None
            if live:
                self.authenticate(conn, name, "register")
        else:
            _, name, password, rid = job.request
            conn.auth = None
            if job.account is not None and job.account[1] == password:
                if live:
                    self.authenticate(conn, job.account[0], "login")
            else:
                self.failures.setdefault(throttle_key(name), []).append(self.now)
                self.failures.setdefault(conn.ip, []).append(self.now)
                if live:
                    self.expect_error(conn.sid, "bad_credentials", rid)
            self.resume_logins(throttle_key(name), conn.ip)
        self.settle()

    def resume_logins(self, key: str, ip: str) -> None:
        """Logins that waited for this name or address: refused once either has failed too
        often, else started, or still waiting while either is busy."""
        waiting = [c for c in self.waiting_logins() if key == throttle_key(c.auth[1]) or ip == c.ip]
        started = {job.conn.sid for job in self.adopt_jobs()}
        for conn in waiting:
            answer = self.fx.inbox[conn.sid][self.seen[conn.sid]:]
            refused = self.refused(throttle_key(conn.auth[1])) or self.refused(conn.ip)
            if answer:
                assert refused, f"a waiting login refused too early: {answer}"
                self.expect_error(conn.sid, "rate_limited", conn.auth[3])
                conn.auth = None
            elif conn.sid in started:
                assert not refused, "a login started for a name or address that has failed too often"
            else:
                assert self.busy(throttle_key(conn.auth[1])) or self.busy(conn.ip), \
                    "a login still waits though there is room"

    @precondition(lambda self: self.idle())
    @rule(pick=PICK, text=st.sampled_from(TEXTS) | st.sampled_from(BAD_TEXTS), with_id=st.booleans())
    def say(self, pick: int, text: Any, with_id: bool, among: list[int] | None = None) -> None:
        rid = self.rid(with_id)
        frame = {"type": "say", **({"text": text} if text is not None else {}),
                 **ided(rid)}
        conn = self.request(pick, frame, among)
        if conn.user is None:
            self.expect_error(conn.sid, "not_authenticated", rid)
        elif text not in TEXTS:
            self.expect_error(conn.sid, "bad_request", rid)
        elif not self.take_token(conn):
            self.expect_error(conn.sid, "rate_limited", rid)
        else:
            said = [f for f in self.new_broadcasts() if f["type"] == "message"]
            assert len(said) == 1, f"one say, {len(said)} messages"
            seq, ts = said[0]["seq"], said[0]["ts"]
            assert not self.messages or seq > self.messages[-1]["seq"], "seq did not increase"
            assert TS.fullmatch(ts), ts
            message = {"seq": seq, "ts": ts, "from": self.online[conn.user][0], "text": text}
            self.messages.append(message)
            self.to_readers({"type": "message", **message, **ided(rid), "room": "general"})
        self.settle()

    @precondition(lambda self: self.signed_in_idle())
    @rule(pick=PICK, text=st.sampled_from(TEXTS), with_id=st.booleans())
    def talk(self, pick: int, text: str, with_id: bool) -> None:
        """A valid `say` from a signed-in session: the common case, made more common."""
        self.say(pick, text, with_id, self.signed_in_idle())

    def take_token(self, conn: Conn) -> bool:
        """Flood control: a bucket of 2R tokens, refilled at R a second."""
        conn.tokens = min(2.0 * CONFIG.rate_limit,
                          conn.tokens + (self.now - conn.refilled) * CONFIG.rate_limit)
        conn.refilled = self.now
        if conn.tokens < 1:
            return False
        conn.tokens -= 1
        return True

    @precondition(lambda self: self.idle())
    @rule(pick=PICK, limit=st.sampled_from([None, 1, 2, 3, 50, 1000, 0, 1001, "2"]),
          before=st.none() | st.integers(0, 14), after=st.none() | st.integers(0, 14),
          with_id=st.booleans())
    def history_request(self, pick: int, limit: Any, before: int | None,
                        after: int | None, with_id: bool) -> None:
        rid = self.rid(with_id)
        frame = {"type": "history", "limit": limit, "before": before, "after": after, "id": rid}
        conn = self.request(pick, {k: v for k, v in frame.items() if v is not None})
        if conn.user is None:
            self.expect_error(conn.sid, "not_authenticated", rid)
        elif limit not in (None, 1, 2, 3, 50, 1000) or (before is not None and after is not None):
            self.expect_error(conn.sid, "bad_request", rid)
        else:
            conn.history = (limit or p.DEFAULT_HISTORY_LIMIT, before, after)
            if not self.adopt_jobs():  # answered from the window at once
                self.expect(conn.sid, history_answer(self.messages, *conn.history))
                conn.history = None
        self.settle()

    @precondition(lambda self: self.idle())
    @rule(pick=PICK, after=st.none() | st.sampled_from(["", "ann", "B", "bob", "COB", "zz", "ß"]),
          with_id=st.booleans())
    def users(self, pick: int, after: str | None, with_id: bool) -> None:
        rid = self.rid(with_id)
        frame = {"type": "users", "after": after, "id": rid}
        conn = self.request(pick, {k: v for k, v in frame.items() if v is not None})
        if conn.user is None:
            self.expect_error(conn.sid, "not_authenticated", rid)
        else:
            self.expect(conn.sid, self.users_frame(after))
        self.settle()

    @precondition(lambda self: self.idle())
    @rule(pick=PICK, rid=st.sampled_from(PING_IDS))
    def ping(self, pick: int, rid: Any) -> None:
        conn = self.request(pick, {"type": "ping", **ided(rid)})
        if rid is None or (isinstance(rid, str) and len(rid) <= 64):
            self.expect(conn.sid, {"type": "pong", **ided(rid)})
        else:
            self.expect_error(conn.sid, "bad_request")
        self.settle()

    @precondition(lambda self: self.idle())
    @rule(pick=PICK, with_id=st.booleans())
    def unknown_type(self, pick: int, with_id: bool) -> None:
        rid = self.rid(with_id)
        conn = self.request(pick, {"type": "dance", **ided(rid)})
        self.expect_error(conn.sid, "unknown_type", rid)
        self.settle()

    @precondition(lambda self: self.conns)
    @rule(pick=PICK, how=st.sampled_from(["quit", "bad_frame", "slow_consumer", "reset"]))
    def leave(self, pick: int, how: str) -> None:
        """A session ends: `quit`, a fatal framing fault, a client that stopped reading, or
        a peer that vanished. The last two may hit a held session too."""
        if how in ("quit", "bad_frame") and not self.idle():
            how = "reset"  # those come from a request, which a held session does not get
        if how == "quit":
            conn = self.request(pick, {"type": "quit"})
            self.expect(conn.sid, {"type": "bye"})
        else:
            pool = self.idle() if how == "bad_frame" else sorted(self.conns)
            conn = self.conns[pool[pick % len(pool)]]
            self.begin()
            if how == "bad_frame":
                self.chat.protocol_error(conn.sid, p.ProtocolError("bad_frame", "not JSON", fatal=True))
                self.expect_error(conn.sid, "bad_frame", fatal=True)
            elif how == "slow_consumer":
                self.chat.slow_consumer(conn.sid)
                self.expect_error(conn.sid, "slow_consumer", fatal=True)
            else:
                self.fx.drop(conn.sid)
                self.chat.disconnect(conn.sid, "connection reset")
        self.end(conn, closed=how != "reset")
        self.settle()

    @precondition(lambda self: self.online)
    @rule(name=st.sampled_from(NAMES + ["Nobody"]))
    def kick(self, name: str) -> None:
        self.begin()
        kicked = sorted(self.online.get(name.lower(), ("", set()))[1])
        assert self.chat.kick(name) == len(kicked)
        for sid in kicked:
            self.expect(sid, {"type": "kicked"})
        for sid in kicked:
            self.end(self.conns[sid])
        self.settle()

    @precondition(lambda self: self.online)
    @rule(text=st.sampled_from(TEXTS + [t for t in BAD_TEXTS if isinstance(t, str)]))
    def notice(self, text: str) -> None:
        self.begin()
        if text in TEXTS:
            assert self.chat.notice(text) == len(self.readers())
            self.to_readers({"type": "notice", "text": text})
        else:
            try:
                self.chat.notice(text)
            except ValueError:
                pass
            else:
                raise AssertionError(f"notice {text!r} taken")
        self.settle()

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 10.0, 31.0, 61.0]))
    def tick(self, seconds: float) -> None:
        """Time passes: flood tokens come back, failed logins are forgiven, slow logins time out."""
        self.begin()
        self.now += seconds
        self.chat.advance(self.now, self.now)
        self.chat.expire(self.now)
        for conn in list(self.conns.values()):
            if conn.user is None and self.now >= conn.since + CONFIG.auth_timeout:
                self.expect_error(conn.sid, "auth_timeout", fatal=True)
                self.end(conn)
        self.settle()

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def sessions_agree(self) -> None:
        """The loop's subscribers are the authenticated sessions; held ones are those waiting."""
        assert self.fx.readers == set(self.readers())
        assert self.chat.subscribers == len(self.readers())
        waiting = {c.sid for c in self.conns.values() if c.auth is not None or c.history is not None}
        assert self.fx.held & set(self.conns) == waiting

    @invariant()
    def presence_agrees(self) -> None:
        """The operator's `users` table: one row per user online, with its session count."""
        table = [(name, count) for name, count, _peers in self.chat.users_table(str)]
        want = sorted(((name, len(sids)) for name, sids in self.online.values()),
                      key=lambda row: row[0].lower())
        assert table == want

    @invariant()
    def nothing_waits_for_nothing(self) -> None:
        """A login that waits for others in flight is never left waiting when none are."""
        if not self.fx.jobs:
            assert not self.waiting_logins()


def test_chat_against_its_model(monkeypatch) -> None:
    # Real Argon2 costs 25 ms a hash; the parameters travel with each hash.
    monkeypatch.setattr(jobs, "hash_password", CHEAP.hash)
    monkeypatch.setattr(jobs, "dummy_hash", lambda: CHEAP.hash("no such account"))
    # PROTOCOL.md's 5 and 20 failed logins take more steps than a run has; test_chat_core
    # holds the chat to those numbers, this machine to what happens when they are reached.
    monkeypatch.setattr(chat_auth, "MAX_FAILURES_PER_NAME", 2)
    monkeypatch.setattr(chat_auth, "MAX_FAILURES_PER_IP", 3)
    run_state_machine_as_test(ChatMachine, settings=settings(
        max_examples=200, stateful_step_count=50, deadline=None, derandomize=True,
        database=None, suppress_health_check=[HealthCheck.too_slow]))

