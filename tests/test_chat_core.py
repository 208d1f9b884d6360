"""The chat rules without sockets: Chat driven through a recording Effects."""

from __future__ import annotations

import pytest
from chat_fakes import CHEAP, PASSWORD, Recorder, open_accounts

from netlab import wire as p
from netlab.chat.sessions import State, move, refusal
from netlab.chat_core import Chat, ChatConfig
from netlab.store.accounts import Accounts
from netlab.store.history import History


@pytest.fixture
def chat(tmp_path):
    def make(**limits) -> tuple[Chat, Recorder, Accounts]:
        accounts = open_accounts(tmp_path, environ={})
        history = History.open(tmp_path / "history.csv")
        fx = Recorder(history, accounts)
        return Chat(ChatConfig(**limits), accounts, fx, fx), fx, accounts

    return make


def login(chat: Chat, sid: int, name: str) -> None:
    chat.connect(sid, f"127.0.0.1:{sid}", "127.0.0.1", 0.0)
    chat.receive(sid, {"type": "login", "username": name, "password": PASSWORD})



def register_and_log_in(chat: Chat, accounts, names: list[str]) -> None:
    """An account for each name, and a session logged in as it (sids from 1, in order)."""
    for name in names:
        accounts.add(name, CHEAP.hash(PASSWORD), "127.0.0.1")
    for sid, name in enumerate(names, start=1):
        login(chat, sid, name)

def test_users_is_cut_to_one_frame_and_pages_on(chat):
    chat, fx, accounts = chat(max_frame=p.MIN_MAX_FRAME, max_clients_per_ip=1000)
    names = [f"user{n:04d}-{'x' * 20}" for n in range(600)]  # ~32 bytes each: more than a frame
    register_and_log_in(chat, accounts, names)
    chat.receive(1, {"type": "users"})
    first = fx.last(1)
    assert first["count"] == 600 and first["more"] is True
    assert len(p.encode_payload(first)) <= p.MIN_MAX_FRAME
    assert first["online"] == sorted(names, key=str.lower)[:len(first["online"])]
    chat.receive(1, {"type": "users", "after": first["online"][-1]})
    second = fx.last(1)
    assert first["online"] + second["online"] == sorted(names, key=str.lower)
    assert second["more"] is False


def test_join_once_per_user_and_leave_after_the_last_session(chat):
    chat, fx, accounts = chat()
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat, 1, "ann")
    login(chat, 2, "ANN")  # a second device
    assert [f for f in fx.broadcasts if f["type"] == "join"] == [{"type": "join", "username": "Ann"}]
    chat.disconnect(1, "closed by peer")
    assert not [f for f in fx.broadcasts if f["type"] == "leave"]
    chat.disconnect(2, "closed by peer")
    assert fx.broadcasts[-1] == {"type": "leave", "username": "Ann"}


def test_message_is_persisted_before_it_is_broadcast_and_numbered(chat):
    chat, fx, accounts = chat(rate_limit=0)
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat, 1, "Ann")
    start = len(fx.events)
    for text in ("one", "two"):
        chat.receive(1, {"type": "say", "text": text})
    assert [r.seq for r in fx.persisted] == [1, 2]
    assert fx.events[start:] == [("persist", 1), ("broadcast", "message"),
                                 ("persist", 2), ("broadcast", "message")]
    said = [f for f in fx.broadcasts if f["type"] == "message"]
    assert [(m["seq"], m["text"]) for m in said] == [(1, "one"), (2, "two")]


def test_failed_logins_are_throttled_per_name(chat):
    chat, fx, accounts = chat()
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    chat.connect(1, "10.0.0.1:1", "10.0.0.1", 0.0)
    for _ in range(5):
        chat.receive(1, {"type": "login", "username": "ann", "password": "wrong password"})
        assert fx.last(1)["code"] == "bad_credentials"
    chat.receive(1, {"type": "login", "username": "ANN", "password": PASSWORD})
    assert fx.last(1)["code"] == "rate_limited"  # even the right password, for a minute



def test_names_no_account_can_have_are_throttled_per_name_too(chat):
    """PROTOCOL.md: 5 failures for one username, "existing or not"; here from 5 addresses,
    so only the name adds up. A name as long as a frame is throttled like any other."""
    chat, fx, _accounts = chat()
    for i, name in enumerate(("a b", "x" * 60_000)):
        for n in range(6):
            sid = 10 * i + n + 1
            chat.connect(sid, f"10.1.0.{n}:1", f"10.1.0.{n}", 0.0)
            chat.receive(sid, {"type": "login", "username": name.upper(), "password": "wrong password"})
            assert fx.last(sid)["code"] == ("rate_limited" if n == 5 else "bad_credentials")

def hold_hashes(fx) -> list:
    """Keep submitted jobs (hashes still running) until the test runs them: (work, done)."""
    held = []
    fx.submit = lambda sid, job, done: held.append((lambda: fx.run(job), done))
    return held


def logins_at_once(chat, passwords: list[str]) -> None:
    """Sessions 1, 2, ... from as many addresses, each logging in as Ann."""
    for sid, password in enumerate(passwords, start=1):
        chat.connect(sid, f"10.0.0.{sid}:1", f"10.0.0.{sid}", 0.0)
        chat.receive(sid, {"type": "login", "username": "ann", "password": password})


def test_simultaneous_guesses_count_before_they_fail(chat):
    chat, fx, accounts = chat()
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    held = hold_hashes(fx)
    logins_at_once(chat, [f"guess {sid}" for sid in range(1, 9)])
    assert len(held) == 5  # the other three wait: nothing has failed yet
    assert all(fx.last(sid)["type"] == "welcome" for sid in (6, 7, 8))
    for work, done in held:
        done(work())
    assert len(held) == 5  # five failures: the three are refused unhashed
    assert [fx.last(sid)["code"] for sid in (6, 7, 8)] == ["rate_limited"] * 3


def test_simultaneous_right_logins_all_get_in(chat):
    chat, fx, accounts = chat()
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    held = hold_hashes(fx)
    logins_at_once(chat, [PASSWORD] * 8)
    while held:
        work, done = held.pop(0)
        done(work())  # each one ended lets a waiting one start
    assert [fx.sent[sid][1]["type"] for sid in range(1, 9)] == ["ok"] * 8


def test_flood_control_allows_a_burst_of_twice_the_rate(chat):
    clock = [1000.0]
    chat_, fx, accounts = chat(rate_limit=5)
    chat_.advance(clock[0], clock[0])
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat_, 1, "Ann")
    for n in range(11):
        chat_.receive(1, {"type": "say", "text": f"m{n}", "id": str(n)})
    errors = [f for f in fx.sent[1] if f["type"] == "error"]
    assert [e["id"] for e in errors] == ["10"] and errors[0]["code"] == "rate_limited"
    clock[0] += 1.0  # five more tokens
    chat_.advance(clock[0], clock[0])
    chat_.receive(1, {"type": "say", "text": "later"})
    assert fx.broadcasts[-1]["text"] == "later"


def test_a_say_whose_message_would_not_fit_a_frame_is_bad_request_and_takes_no_seq(chat):
    chat, fx, accounts = chat(max_frame=p.MIN_MAX_FRAME, rate_limit=0)
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat, 1, "Ann")
    rid = "\x01" * 64  # a legal id, escaped to 384 bytes: with 16000 bytes of text, past the frame
    chat.receive(1, {"type": "say", "text": "\U0001f600" * 4000, "id": rid})
    refused = fx.last(1)
    assert refused["type"] == "error" and refused["code"] == "bad_request" and refused["id"] == rid
    assert "fatal" not in refused
    assert fx.persisted == [] and not [f for f in fx.broadcasts if f["type"] == "message"]
    chat.receive(1, {"type": "say", "text": "fits"})
    assert fx.broadcasts[-1]["seq"] == 1 and [r.seq for r in fx.persisted] == [1]



def test_a_say_refused_as_too_large_costs_no_flood_token(chat):
    """The bucket counts accepted `say` requests (PROTOCOL.md), not refused ones."""
    chat, fx, accounts = chat(max_frame=p.MIN_MAX_FRAME, rate_limit=1)  # bursts of 2
    chat.advance(1000.0, 1000.0)
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat, 1, "Ann")
    for _ in range(3):
        chat.receive(1, {"type": "say", "text": "\U0001f600" * 4000, "id": "\x01" * 64})
        assert fx.last(1)["code"] == "bad_request"
    chat.receive(1, {"type": "say", "text": "fits"})
    assert fx.broadcasts[-1]["text"] == "fits"

def test_a_history_request_right_behind_a_say_includes_it(chat):
    chat, fx, accounts = chat(rate_limit=0)
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat, 1, "Ann")
    chat.receive(1, {"type": "say", "text": "just said"})
    chat.receive(1, {"type": "history"})  # in the same loop pass: not yet saved by the loop
    assert [m["text"] for m in fx.last(1)["messages"]] == ["just said"]


def test_a_login_right_behind_a_say_gets_it_in_its_history(chat):
    chat, fx, accounts = chat(rate_limit=0)
    for name in ("Ann", "Bob"):
        accounts.add(name, CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat, 1, "Ann")
    chat.receive(1, {"type": "say", "text": "before Bob came"})
    login(chat, 2, "Bob")  # subscribed after that broadcast: history is where Bob sees it
    history = next(f for f in fx.sent[2] if f["type"] == "history")
    assert [m["text"] for m in history["messages"]] == ["before Bob came"]


def test_failed_logins_are_throttled_per_address(chat):
    chat, fx, accounts = chat()
    chat.advance(1000.0, 1000.0)
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    chat.connect(1, "10.0.0.9:1", "10.0.0.9", 0.0)
    for n in range(20):  # 20 names, none failing 5 times: only the address adds up
        chat.receive(1, {"type": "login", "username": f"guess{n}", "password": PASSWORD})
        assert fx.last(1)["code"] == "bad_credentials"
    chat.receive(1, {"type": "login", "username": "Ann", "password": PASSWORD, "id": "a"})
    assert fx.last(1)["code"] == "rate_limited" and fx.last(1)["id"] == "a"
    chat.connect(2, "10.0.0.10:1", "10.0.0.10", 0.0)  # another address is not affected
    chat.receive(2, {"type": "login", "username": "Ann", "password": PASSWORD})
    assert fx.sent[2][1] == {"type": "ok", "op": "login", "username": "Ann", "protocol": 1}


def test_failed_logins_are_forgiven_once_the_window_has_passed(chat):
    clock = [1000.0]
    chat, fx, accounts = chat()
    chat.advance(clock[0], clock[0])
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    chat.connect(1, "10.0.0.1:1", "10.0.0.1", 0.0)
    for _ in range(5):
        chat.receive(1, {"type": "login", "username": "ann", "password": "wrong password"})
    clock[0] = 1059.0  # still within 60 s of the failures
    chat.advance(clock[0], clock[0])
    chat.receive(1, {"type": "login", "username": "ann", "password": PASSWORD})
    assert fx.last(1)["code"] == "rate_limited"
    clock[0] = 1060.5
    chat.advance(clock[0], clock[0])
    chat.receive(1, {"type": "login", "username": "ann", "password": PASSWORD})
    assert fx.sent[1][-3] == {"type": "ok", "op": "login", "username": "Ann", "protocol": 1}


def test_logins_past_the_bound_of_pending_hashes_are_rate_limited(chat):
    chat, fx, accounts = chat(max_pending_auth=2)
    held = hold_hashes(fx)
    for sid in (1, 2, 3):
        chat.connect(sid, f"10.0.0.{sid}:1", f"10.0.0.{sid}", 0.0)
        chat.receive(sid, {"type": "login", "username": f"user{sid}", "password": PASSWORD, "id": "l"})
    assert len(held) == 2
    assert fx.last(3) == {"type": "error", "code": "rate_limited", "message": fx.last(3)["message"],
                          "id": "l"}
    work, done = held.pop(0)
    done(work())  # one hash finished: room for one more
    answered = len(fx.sent[3])
    chat.receive(3, {"type": "login", "username": "user3", "password": PASSWORD})
    assert len(held) == 2 and len(fx.sent[3]) == answered  # taken: its hash is running


def test_users_never_passes_max_frame_when_all_would_fit_but_for_the_more_flag(chat):
    chat, fx, accounts = chat(max_frame=p.MIN_MAX_FRAME, max_clients_per_ip=1000)
    # All names in one frame with `"more":false` take exactly max_frame + 1 bytes; with one
    # name cut (and `"more":true`) they fit.
    count = 400
    while True:
        names = [f"u{n:04d}{'x' * 27}" for n in range(count - 1)]
        size = len(p.encode_payload(p.users_reply([*names, ""], count, False)))
        last = p.MIN_MAX_FRAME + 1 - size
        if 1 <= last <= 32:
            break
        count += 1
    names.append("z" * last)
    assert len(p.encode_payload(p.users_reply(names, count, False))) == p.MIN_MAX_FRAME + 1
    register_and_log_in(chat, accounts, names)
    chat.receive(1, {"type": "users"})
    first = fx.last(1)
    assert len(p.encode_payload(first)) <= p.MIN_MAX_FRAME
    assert first["more"] is True and first["online"] == names[:-1]
    chat.receive(1, {"type": "users", "after": first["online"][-1]})
    assert fx.last(1) == {"type": "users", "online": [names[-1]], "count": count, "more": False}


def test_connections_past_the_per_address_limit_get_server_full(chat):
    chat, fx, _accounts = chat(max_clients_per_ip=2)
    for sid in (1, 2):
        chat.connect(sid, f"10.0.0.1:{sid}", "10.0.0.1", 0.0)
    chat.connect(3, "10.0.0.1:3", "10.0.0.1", 0.0)
    assert fx.sent[3] == [{"type": "error", "code": "server_full", "fatal": True,
                           "message": fx.sent[3][0]["message"]}]
    assert 3 in fx.closed
    chat.connect(4, "10.0.0.2:4", "10.0.0.2", 0.0)
    assert fx.last(4)["type"] == "welcome"
    chat.disconnect(1, "closed by peer")
    chat.connect(5, "10.0.0.1:5", "10.0.0.1", 0.0)
    assert fx.last(5)["type"] == "welcome"


def test_removed_accounts_sessions_end_with_kicked(chat):
    chat, fx, accounts = chat()
    register_and_log_in(chat, accounts, ["Ann", "Bob", "Cy"])
    chat.connect(4, "127.0.0.1:4", "127.0.0.1", 0.0)  # not logged in: no account to lose
    accounts.clear()
    accounts.add("Bob", CHEAP.hash(PASSWORD), "127.0.0.2")  # someone else's account now
    accounts.add("Cy", CHEAP.hash(PASSWORD), "127.0.0.2")
    login(chat, 5, "Cy")  # logged in to the new account: stays
    assert chat.end_sessions_without_account() == 3
    assert fx.last(1) == {"type": "kicked", "reason": "account removed"}
    assert fx.last(2) == {"type": "kicked", "reason": "account removed"}
    assert {1, 2, 3} <= set(fx.closed) and 4 not in fx.closed and 5 not in fx.closed
    assert {"type": "leave", "username": "Ann"} in fx.broadcasts
    assert [(name, count) for name, count, _ in chat.users_table(str)] == [("Cy", 1)]


def test_a_login_whose_account_is_removed_while_hashing_fails(chat):
    chat, fx, accounts = chat()
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    held = hold_hashes(fx)
    chat.connect(1, "127.0.0.1:1", "127.0.0.1", 0.0)
    chat.receive(1, {"type": "login", "username": "ann", "password": PASSWORD})
    chat.connect(2, "127.0.0.1:2", "127.0.0.1", 0.0)
    chat.receive(2, {"type": "register", "username": "bob", "password": PASSWORD})
    results = [work() for work, _ in held]  # Bob's account is stored
    accounts.clear()  # the operator's `clear file`, before the loop hears of either
    for (_, done), result in zip(held, results, strict=True):
        done(result)
    assert fx.last(1)["code"] == "bad_credentials"
    assert fx.last(2)["code"] == "bad_credentials"
    assert chat.users_table(str) == []


def test_a_history_page_the_disk_cannot_read_is_answered_not_raised(tmp_path, monkeypatch):
    """The worker pool hands what a disk read raised to the chat as its result."""
    accounts = open_accounts(tmp_path, environ={})
    history = History.open(tmp_path / "history.csv", window=2)
    fx = Recorder(history, accounts)
    chat = Chat(ChatConfig(rate_limit=0), accounts, fx, fx)
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat, 1, "Ann")
    for text in ("one", "two", "three"):
        chat.receive(1, {"type": "say", "text": text})
    fx.save()

    def unreadable(**_page) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(history, "page", unreadable)
    chat.receive(1, {"type": "history", "limit": 1, "before": 2, "id": "h"})  # before the window
    assert fx.last(1) == {"type": "error", "code": "bad_request", "message": "history could not be read",
                          "id": "h"}
    chat.receive(1, {"type": "ping", "id": "after"})  # and the session goes on
    assert fx.last(1) == {"type": "pong", "id": "after"}


def test_a_session_moves_only_as_its_state_table_says():
    state = move(State.CONNECTED, "auth_started")
    assert refusal(state, "say") == "not_authenticated" and refusal(state, "ping") is None
    state = move(move(state, "auth_ended"), "authenticated")
    assert state is State.AUTHENTICATED and refusal(state, "login") == "already_authenticated"
    with pytest.raises(ValueError, match="auth_started cannot happen to a session authenticated"):
        move(state, "auth_started")
