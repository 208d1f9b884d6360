"""The chat client's sans-IO session, frame by frame: no socket, no thread, no clock.

Each test hands the session frames (and the time) and checks what it returns:
things to show, frames to send, timers and reconnects wanted, and its exit status.
"""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.client.effects import Credentials, Drop, Effect, Reconnect, Send, Show, Timer
from netlab.client.session import ClientSession

ADDRESS = "127.0.0.1:7000"
WELCOME = {"type": "welcome", "server": "netlab", "protocol": 1, "max_frame": 65536}
TS = "2026-01-01T00:00:00.000Z"


def session(register: bool = False, history_at_login: int | None = None,
            jitter: float = 1.0) -> ClientSession:
    return ClientSession(Credentials("ann", "correct horse", register), ADDRESS, history_at_login,
                         jitter=lambda: jitter)


def sent(effects: list[Effect]) -> list[dict]:
    return [effect.frame for effect in effects if isinstance(effect, Send)]


def shown(effects: list[Effect], *kinds: str) -> list[str]:
    return [effect.text for effect in effects
            if isinstance(effect, Show) and effect.kind != "frame" and (not kinds or effect.kind in kinds)]


def message(seq: int, text: str = "", sender: str = "bob", rid: str | None = None) -> dict:
    frame = {"type": "message", "seq": seq, "ts": TS, "from": sender, "text": text or f"m{seq}"}
    return frame if rid is None else {**frame, "id": rid}


def history(*seqs: int, more: bool = False) -> dict:
    return {"type": "history", "messages": [message(seq) for seq in seqs], "more": more}


def logged_in(client: ClientSession, *seqs: int, now: float = 0.0) -> list[Effect]:
    """Welcome, `ok`, and the history after it holding `seqs`; the effects of all three."""
    effects = client.welcomed(WELCOME, now)
    effects += client.receive({"type": "ok", "op": "login", "username": "ann"}, now)
    return effects + client.receive(history(*seqs), now)


# -- logging in --------------------------------------------------------------------------------


def test_a_welcome_is_answered_by_the_login_and_nothing_is_sent_before():
    client = session(register=True)
    effects = client.welcomed(WELCOME, 0.0)
    assert effects[0] == Show("frame", frame=WELCOME)  # --json prints the welcome too
    assert sent(effects) == [{"type": "register", "username": "ann", "password": "correct horse"}]
    client.receive({"type": "ok", "op": "register", "username": "Ann"}, 0.0)
    assert client.username == "Ann"  # as registered
    client.connection_lost("closed by the server", 0.0)
    assert sent(client.welcomed(WELCOME, 1.0))[0]["type"] == "login"  # registered once only


def test_a_full_server_ends_the_session_before_anything_is_sent():
    client = session()
    effects = client.welcomed({"type": "error", "code": "server_full", "message": "full", "fatal": True}, 0.0)
    assert sent(effects) == [] and client.status == 1
    assert shown(effects) == ["error: the server is full; try again later"]


def test_a_wrong_password_ends_the_session_and_says_why():
    client = session()
    client.welcomed(WELCOME, 0.0)
    effects = client.receive({"type": "error", "code": "bad_credentials", "message": "no"}, 0.0)
    assert shown(effects, "fatal") == ["error: unknown user or wrong password"]
    assert client.status == 1 and client.refusal == "bad_credentials" and not client.authenticated_once


def test_a_throttled_login_is_tried_again_later_and_later_on_its_own_connection():
    client = session()
    client.welcomed(WELCOME, 0.0)
    throttled = {"type": "error", "code": "rate_limited", "message": "too many failed logins"}
    waits = []
    for now in (10.0, 20.0, 30.0):
        effects = client.receive(throttled, now)
        [timer] = [effect for effect in effects if isinstance(effect, Timer)]
        waits.append(timer.at - now)
        assert shown(effects)[0].endswith(f"trying again in {waits[-1]:.1f} s")
        assert sent(client.timer_fired(timer.name, timer.at))[0]["type"] == "login"
    assert waits == [0.5, 1.0, 2.0]
    # The throttle outlasts the auth timeout: a new connection, not the end.
    effects = client.receive({"type": "error", "code": "auth_timeout", "message": "", "fatal": True}, 40.0)
    assert isinstance(effects[1], Drop) and effects[-1] == Reconnect(44.0) and client.status is None
    client.welcomed(WELCOME, 44.0)
    assert client.timer_fired(timer.name, 45.0) == []  # the old connection's retry is void


def test_a_connection_lost_before_any_login_ends_the_session():
    client = session()
    effects = client.connection_lost("Connection refused", 0.0)
    assert shown(effects, "fatal") == [f"cannot connect to {ADDRESS}: Connection refused"]
    assert client.status == 1


def test_silence_is_no_chat_server_at_the_start_and_a_restarting_one_later():
    client = session()
    client.no_welcome("X is not a netlab chat server", "no welcome within 5 s", 0.0)
    assert client.status == 1
    client = session()
    logged_in(client)
    client.connection_lost("closed by the server", 0.0)
    effects = client.no_welcome("X is not a netlab chat server", "no welcome within 5 s", 1.0)
    assert shown(effects) == ["connection lost (no welcome within 5 s); reconnecting in 1.0 s"]


def test_reconnects_back_off_with_jitter_and_a_login_resets_the_backoff():
    client = session(jitter=0.0)  # the bottom of the range: half the backoff
    logged_in(client)
    waits = []
    for now in (0.0, 10.0, 20.0):
        [reconnect] = [e for e in client.connection_lost("reset", now) if isinstance(e, Reconnect)]
        waits.append(reconnect.at - now)
    assert waits == [0.25, 0.5, 1.0]
    client.welcomed(WELCOME, 30.0)
    client.receive({"type": "ok", "op": "login", "username": "ann"}, 30.0)
    effects = client.receive({"type": "shutdown", "reason": "maintenance"}, 31.0)
    assert shown(effects) == ["the server is shutting down: maintenance",
                              "connection lost (server shutdown); reconnecting in 0.2 s"]
    assert Drop() in effects and effects[-1] == Reconnect(31.25)


# -- lines, their echoes, the end ---------------------------------------------------------------


def test_lines_go_one_at_a_time_each_when_the_one_before_came_back():
    client = session()
    assert client.say("one", 1) == []  # not online yet: it waits
    effects = logged_in(client)
    assert sent(effects)[1:] == [{"type": "say", "text": "one", "id": "c1"}]
    assert client.say("two", 2) == []  # "one" is in flight
    effects = client.receive(message(1, "one", "ann", "c1"), 1.0)
    assert sent(effects) == [{"type": "say", "text": "two", "id": "c2"}]
    assert shown(effects) == ["ann: one"]


def test_a_rate_limited_line_is_sent_again_and_cannot_be_overtaken():
    client = session()
    logged_in(client)
    client.say("one")
    client.say("two")
    effects = client.receive({"type": "error", "code": "rate_limited", "message": "slow", "id": "c1"}, 5.0)
    assert effects[1:] == [Timer(5.5, ("resend", "c1"))] and shown(effects) == []
    assert sent(client.timer_fired(("resend", "c1"), 5.5)) == [{"type": "say", "text": "one", "id": "c1"}]
    client.receive(message(1, "one", "ann", "c1"), 6.0)
    assert client.timer_fired(("resend", "c1"), 6.5) == []  # came back meanwhile


def test_a_line_the_server_refuses_is_named_by_its_number_and_the_next_goes():
    client = session()
    logged_in(client)
    client.say("bad", 7)
    client.say("good", 8)
    effects = client.receive({"type": "error", "code": "bad_request", "message": "no", "id": "c1"}, 0.0)
    refusal = Show("error", "error: the server rejected that request as malformed", effects[0].frame, 7)
    assert refusal in effects
    assert sent(effects) == [{"type": "say", "text": "good", "id": "c2"}]
    assert client.refused == 1


def test_end_of_input_leaves_once_every_line_came_back():
    client = session()
    logged_in(client)
    client.say("last")
    assert client.end_of_input() == []
    effects = client.receive(message(1, "last", "ann", "c1"), 0.0)
    assert sent(effects) == [{"type": "quit"}]
    assert client.receive({"type": "bye"}, 0.0) == [Show("frame", frame={"type": "bye"})]
    assert client.status == 0


def test_quit_with_no_connection_ends_at_once_and_a_loss_after_quit_is_the_end_too():
    client = session()
    logged_in(client)
    client.connection_lost("reset", 0.0)
    assert client.quit() == [] and client.status == 0
    client = session()
    logged_in(client)
    assert sent(client.quit()) == [{"type": "quit"}]
    assert client.connection_lost("closed by the server", 0.0) == [] and client.status == 0


def test_a_kick_ends_the_session_with_status_three():
    client = session()
    logged_in(client)
    effects = client.receive({"type": "kicked", "reason": "spam"}, 0.0)
    assert shown(effects, "fatal") == ["kicked by the operator: spam"] and client.status == 3


# -- what is shown of the history ----------------------------------------------------------------


def test_the_history_after_login_is_cut_to_what_was_asked_and_the_rest_counts_as_seen():
    client = session(history_at_login=1)
    effects = logged_in(client, 4, 5, 6)
    [frame] = [e.frame for e in effects if e == Show("frame", frame=e.frame) and e.frame["type"] == "history"]
    assert [m["seq"] for m in frame["messages"]] == [6] and frame["more"] is True  # --json sees the cut
    assert shown(effects, "history") == ["bob: m6"]
    assert shown(client.receive(message(6), 0.0)) == []  # seen: not again
    assert sent(client.requests.history(2)) == [{"type": "history", "limit": 2, "before": 6}]


def test_a_history_page_is_set_apart_and_says_when_there_is_no_more():
    client = session()
    logged_in(client, 5)
    effects = client.receive(history(3, 4, more=True), 0.0)
    assert shown(effects) == ["── 2 earlier messages ──", "bob: m3", "bob: m4",
                              "── end of earlier messages ──", "(older messages: /history)"]
    assert shown(client.receive(history(), 0.0)) == ["no older messages"]


def test_a_reconnect_pages_forward_when_the_history_after_login_leaves_a_gap():
    client = session()
    logged_in(client, 1, 2)
    client.connection_lost("reset", 0.0)
    client.welcomed(WELCOME, 1.0)
    client.receive({"type": "ok", "op": "login", "username": "ann"}, 1.0)
    effects = client.receive(history(9, 10, more=True), 1.0)  # 3 to 8 are missing
    assert sent(effects) == [{"type": "history", "after": 2, "limit": 1000}] and shown(effects) == []
    assert client.receive(message(11), 1.0)[1:] == []  # held until the gap is filled
    effects = client.receive(history(*range(3, 11), more=False), 1.0)
    assert shown(effects, "message") == [f"bob: m{seq}" for seq in range(3, 12)]


# -- every message once, in order, whatever the interleaving -----------------------------------


class FakeServer:
    """A chat server's side of PROTOCOL.md as far as resync goes: one log of messages,
    a stream of frames in transit to the client, history pages of a size drawn by
    hypothesis, and live messages sent to a logged-in connection."""

    def __init__(self, client: ClientSession, history_size: int, draw) -> None:
        self.client, self.history_size, self.draw = client, history_size, draw
        self.log: list[int] = []
        self.transit: list[dict] = []
        self.online = False  # the client is logged in on the current connection
        self.shown: list[int] = []

    def say(self) -> None:
        self.log.append(len(self.log) + 1)
        if self.online:
            self.transit.append(message(self.log[-1]))

    def connect(self) -> None:
        self.handle(self.client.welcomed(WELCOME, 0.0))

    def drop(self) -> None:
        self.transit.clear()
        self.online = False
        self.handle(self.client.connection_lost("reset", 0.0))

    def deliver(self) -> None:
        if self.transit:
            self.handle(self.client.receive(self.transit.pop(0), 0.0))

    def handle(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Show) and effect.kind in ("message", "history"):
                self.shown.append(effect.frame["seq"])
            elif isinstance(effect, Send) and effect.frame["type"] == "login":
                newest = self.log[-self.history_size:]
                self.transit += [{"type": "ok", "op": "login", "username": "ann"},
                                 history(*newest, more=len(self.log) > len(newest))]
                self.online = True
            elif isinstance(effect, Send) and effect.frame["type"] == "history":
                after = [seq for seq in self.log if seq > effect.frame["after"]]
                page = after[:self.draw(st.integers(1, 3))]  # "never more than fit in one frame"
                self.transit.append(history(*page, more=len(after) > len(page)))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.lists(st.sampled_from(["say", "deliver", "deliver", "drop"]), max_size=60),
       st.data())
def test_reconnects_never_show_a_message_twice_nor_skip_one(history_size, steps, data):
    server = FakeServer(session(), history_size, data.draw)
    server.connect()
    server.deliver()
    server.deliver()  # logged in: a loss from now on is waited out
    for step in steps:
        if step == "drop":
            server.drop()
            server.connect()
        else:
            getattr(server, step)()
    while server.transit:  # the network settles
        server.deliver()
    assert server.shown == server.log


# -- sans-IO -----------------------------------------------------------------------------------------


SANS_IO = ("session", "timeline", "places", "pending", "auth", "requests", "words", "effects")


def test_the_session_imports_no_socket_thread_clock_or_file():
    """The session and the modules it is made of import only each other, the wire's
    sans-IO rules and the standard library's plain data."""
    allowed = {"__future__", "collections", "collections.abc", "dataclasses", "re", "typing", "netlab",
               "netlab.wire", *(f"netlab.client.{name}" for name in SANS_IO)}
    for name in SANS_IO:
        tree = ast.parse((Path(__file__).parent.parent / "netlab" / "client" / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        assert imported <= allowed, (name, imported - allowed)
