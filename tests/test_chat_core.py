"""The chat rules without sockets: Chat driven through a recording Effects."""

from __future__ import annotations

import json

import pytest
from argon2 import PasswordHasher

from netlab import protocol as p
from netlab.chat_core import Chat, ChatConfig
from netlab.store import Accounts, History

#: Cheap hashes for accounts made by the test itself: the parameters travel
#: with each hash, so verifying one costs microseconds, not 25 ms.
CHEAP = PasswordHasher(memory_cost=8, time_cost=1, parallelism=1)
PASSWORD = "correct horse"


class Recorder:
    """Effects that record what the chat asks for and run work at once."""

    def __init__(self) -> None:
        self.sent: dict[int, list[dict]] = {}
        self.broadcasts: list[dict] = []
        self.subscribed: list[int] = []
        self.closed: list[int] = []
        self.persisted = []

    def send(self, sid: int, data: bytes) -> None:
        assert p.HEADER.unpack_from(data)[0] == len(data) - 4
        self.sent.setdefault(sid, []).append(json.loads(data[4:]))

    def broadcast(self, data: bytes, *, urgent: bool = True) -> None:
        self.broadcasts.append(json.loads(data[4:]))

    def subscribe(self, sid: int) -> None:
        self.subscribed.append(sid)

    def persist(self, record) -> None:
        self.persisted.append(record)

    def save(self) -> None:
        pass

    def close(self, sid: int) -> None:
        self.closed.append(sid)

    def submit(self, sid: int, work, done, *, disk: bool = False) -> None:
        done(work())

    def hold(self, sid: int, held: bool) -> None:
        pass

    def last(self, sid: int) -> dict:
        return self.sent[sid][-1]


@pytest.fixture
def chat(tmp_path):
    def make(**limits) -> tuple[Chat, Recorder, Accounts]:
        accounts = Accounts.open(tmp_path, environ={})
        history = History.open(tmp_path / "history.csv")
        fx = Recorder()
        return Chat(ChatConfig(**limits), accounts, history, fx), fx, accounts

    return make


def login(chat: Chat, sid: int, name: str) -> None:
    chat.connect(sid, f"127.0.0.1:{sid}", "127.0.0.1", 0.0)
    chat.receive(sid, {"type": "login", "username": name, "password": PASSWORD})


def test_users_is_cut_to_one_frame_and_pages_on(chat):
    chat, fx, accounts = chat(max_frame=p.MIN_MAX_FRAME)
    names = [f"user{n:04d}-{'x' * 20}" for n in range(600)]  # ~32 bytes each: more than a frame
    for name in names:
        accounts.add(name, CHEAP.hash(PASSWORD), "127.0.0.1")
    for sid, name in enumerate(names, start=1):
        login(chat, sid, name)
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
    for text in ("one", "two"):
        chat.receive(1, {"type": "say", "text": text})
    assert [r.seq for r in fx.persisted] == [1, 2]
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


def hold_hashes(fx) -> list:
    """Keep submitted jobs (hashes still running) until the test runs them."""
    held = []
    fx.submit = lambda sid, work, done, disk=False: held.append((work, done))
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
    chat_.clock = lambda: clock[0]
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    login(chat_, 1, "Ann")
    for n in range(11):
        chat_.receive(1, {"type": "say", "text": f"m{n}", "id": str(n)})
    errors = [f for f in fx.sent[1] if f["type"] == "error"]
    assert [e["id"] for e in errors] == ["10"] and errors[0]["code"] == "rate_limited"
    clock[0] += 1.0  # five more tokens
    chat_.receive(1, {"type": "say", "text": "later"})
    assert fx.broadcasts[-1]["text"] == "later"
