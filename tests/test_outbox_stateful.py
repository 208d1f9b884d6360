"""The outbox with rooms against a model: a hypothesis state machine.

Sessions (of two codecs) open, subscribe to and leave three rooms, get broadcasts
(messages and paced presence) and private frames, take part of a send or nothing,
close; a commit fails now and then (mark, take back). At the end every sink is
drained and each session must have received exactly the frames of its rooms from
its subscription to its leave (or close), and its private frames, each room's in
its order, each private frame after the broadcasts queued before it and before
those queued after it. Frames of different rooms may come in any order.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from test_outbox import CountingCodec, Sink, new_box

from netlab import wire as p
from netlab.wire import encode_payload

ROOMS = ["a", "b", "c"]
SIDS = st.integers(1, 5)
CODECS = [p.LENGTH_PREFIX, CountingCodec("other")]
#: Bytes a sink takes before its buffer is full: nothing, a few (inside a frame), or all.
ROOM_SIZES = st.sampled_from([0, 1, 7, 30, 200, None])

Token = tuple  # ("b", room, n) for a broadcast, ("p", n) for a private frame


class Session:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.rooms: set[str] = set()
        self.expected: list[Token] = []  # in the order queued
        self.closing = False
        self.cut = False  # its backlog was dropped: it gets a part of `expected`, then an error


class OutboxRooms(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.outbox, self.port, self.clock = new_box(max_output=10**9)  # cuts: test_outbox's
        self.sessions: dict[int, Session] = {}
        self.n = 0
        self.marked: list[tuple[Session, Token]] | None = None  # broadcasts since the mark
        self.mark = None

    def token(self) -> int:
        self.n += 1
        return self.n

    def live(self, sid: int) -> Session | None:
        session = self.sessions.get(sid)
        return session if session is not None and not session.closing else None

    @rule(sid=SIDS, codec=st.sampled_from(CODECS))
    def open(self, sid, codec):
        if sid not in self.sessions:
            sink = Sink()
            self.outbox.open(sid, sink, codec)
            self.sessions[sid] = Session(sink)

    @rule(sid=SIDS, room=st.sampled_from(ROOMS))
    def subscribe(self, sid, room):
        if (session := self.live(sid)) is not None:
            self.outbox.subscribe(sid, room)
            session.rooms.add(room)

    @rule(sid=SIDS, room=st.sampled_from(ROOMS))
    def unsubscribe(self, sid, room):
        if (session := self.live(sid)) is not None:
            self.outbox.unsubscribe(sid, room)
            session.rooms.discard(room)

    @rule(room=st.sampled_from(ROOMS), urgent=st.booleans(), size=st.sampled_from([0, 3000]))
    def broadcast(self, room, urgent, size):
        n = self.token()
        self.outbox.broadcast(encode_payload({"type": "b", "room": room, "n": n, "pad": "x" * size}),
                              room=room, urgent=urgent)
        for session in self.sessions.values():
            if not session.closing and room in session.rooms:
                session.expected.append(("b", room, n))
                if self.marked is not None:
                    self.marked.append((session, ("b", room, n)))

    @rule(sid=SIDS)
    def send(self, sid):
        if (session := self.live(sid)) is not None:
            n = self.token()
            self.outbox.send(sid, encode_payload({"type": "p", "n": n}))
            session.expected.append(("p", n))

    @rule(sid=SIDS)
    def close(self, sid):
        if (session := self.live(sid)) is not None:
            self.outbox.close(sid)
            session.closing = True

    @rule(sid=SIDS)
    def cut(self, sid):
        """As the outbox cuts a slow consumer (test_outbox's port answers with an error)."""
        if (session := self.live(sid)) is not None:
            self.outbox.cut(self.outbox.outputs[sid])
            session.closing = session.cut = True

    @rule(sid=SIDS, size=ROOM_SIZES)
    def sink_room(self, sid, size):
        if sid in self.sessions:
            self.sessions[sid].sink.room = size

    @precondition(lambda self: self.marked is None)
    @rule()
    def mark(self):
        self.mark, self.marked = self.outbox.mark(), []

    @precondition(lambda self: self.marked is not None)
    @rule()
    def commit_fails(self):
        self.outbox.take_back(self.mark)
        for session, token in self.marked:
            session.expected.remove(token)
        self.marked = None

    @rule(later=st.sampled_from([0.0, 0.01, 1.0]), data=st.data())
    def flush(self, later, data):
        self.clock[0] += later
        blocked = sorted(out.sid for out in self.outbox.outputs.values() if out.blocked)
        writable = data.draw(st.sets(st.sampled_from(blocked))) if blocked else set()
        self.outbox.flush({self.outbox.outputs[sid] for sid in writable})
        self.marked = None  # a commit follows its pass; past a flush it cannot be taken back

    @invariant()
    def logs_have_readers_and_blocked_counts_never_overstate(self):
        for log in self.outbox.logs:
            assert log.subs
        for out in self.outbox.outputs.values():
            if out.blocked:
                assert out.unread <= sum(reader.end - reader.cursor for reader in out.readers)

    def teardown(self):
        for session in self.sessions.values():
            session.sink.room = None
        self.clock[0] += 10.0
        for _ in range(3):
            self.outbox.flush({out for out in self.outbox.outputs.values() if out.blocked})
        for sid, session in self.sessions.items():
            frames = session.sink.frames()
            if session.cut:
                assert frames[-1]["code"] == "slow_consumer"
                frames = frames[:-1]
            received = [token_of(frame) for frame in frames]
            check([token for token in session.expected if not session.cut or token in received], received)
            if session.closing:
                assert ("drained", sid) in self.port.events


def token_of(frame: dict) -> Token:
    return ("b", frame["room"], frame["n"]) if frame["type"] == "b" else ("p", frame["n"])


def check(expected: list[Token], received: list[Token]) -> None:
    """`received` holds what was queued, and keeps every order but between rooms'."""
    assert sorted(received) == sorted(expected)
    at = {token: i for i, token in enumerate(received)}
    for i, earlier in enumerate(expected):
        for later in expected[i + 1:]:
            if earlier[0] == later[0] == "b" and earlier[1] != later[1]:
                continue  # different rooms: any order
            assert at[earlier] < at[later], (earlier, later, received)


def test_each_session_gets_its_rooms_in_order_and_private_frames_in_place():
    run_state_machine_as_test(OutboxRooms, settings=settings(
        max_examples=500, stateful_step_count=60, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
