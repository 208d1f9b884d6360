"""Bans and mutes in the chat core, without sockets (chat/moderation.py): the clocks they
run on, and where they hook into a login and a `say`."""

from __future__ import annotations

import dataclasses

import pytest
from chat_fakes import CHEAP, PASSWORD, Recorder, open_accounts

from netlab import wire as p
from netlab.chat.jobs import SaveRestriction
from netlab.chat.moderation import BAN, MUTE, parse_duration
from netlab.chat_core import Chat, ChatConfig
from netlab.store.history import History
from netlab.store.room_records import Restriction, RoomsSnapshot

WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture
def made(tmp_path):
    def make(*restrictions: Restriction) -> tuple[Chat, Recorder, str]:
        accounts = open_accounts(tmp_path, environ={})
        ann = accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
        fx = Recorder(History.open(tmp_path / "history.csv"), accounts)
        of_ann = [dataclasses.replace(r, account=ann.id) for r in restrictions]
        snapshot = RoomsSnapshot(restrictions=of_ann)
        chat = Chat(ChatConfig(rate_limit=0), accounts, fx, fx, snapshot)
        chat.advance(1000.0, WALL)
        return chat, fx, ann.id

    return make


def login(chat: Chat, sid: int, password: str = PASSWORD) -> None:
    chat.connect(sid, f"127.0.0.1:{sid}", "127.0.0.1", chat.now)
    chat.receive(sid, {"type": "login", "username": "ann", "password": password})


def test_a_stored_ban_runs_on_the_monotonic_clock_from_its_first_check(made):
    chat, fx, _ = made(Restriction(BAN, "", p.timestamp(WALL + 60), "spam"))
    login(chat, 1)
    assert fx.last(1) == {"type": "error", "code": "banned", "fatal": True,
                          "message": "banned until 2027-01-15 08:01:00 UTC: spam"}
    assert 1 in fx.closed
    chat.advance(1059.0, WALL + 7200)  # the wall clock stepped forward: the ban still holds
    login(chat, 2)
    assert fx.last(2)["code"] == "banned"
    chat.advance(1060.0, WALL - 7200)  # stepped back: the ban ends all the same
    login(chat, 3)
    assert fx.sent[3][1]["type"] == "ok"
    assert chat.moderation.listing(BAN) == []


def test_a_banned_account_with_a_wrong_password_gets_bad_credentials(made):
    chat, fx, _ = made(Restriction(BAN, "", "", ""))
    login(chat, 1, "not the password")
    assert fx.last(1)["code"] == "bad_credentials" and "fatal" not in fx.last(1)
    login(chat, 2)
    assert fx.last(2)["message"] == "banned until the operator lifts it"


def test_a_ban_is_stored_before_it_ends_the_sessions(made):
    chat, fx, ann = made()
    login(chat, 1)
    results = []
    chat.moderation.restrict(BAN, "ANN", parse_duration("2h"), "flooding", lambda *r: results.append(r))
    assert fx.saved == [SaveRestriction(Restriction(BAN, ann, p.timestamp(WALL + 7200), "flooding"), False)]
    assert results == [(None, 1)] and fx.last(1)["code"] == "banned" and 1 in fx.closed
    assert chat.moderation.listing(BAN) == [("Ann", "until 2027-01-15 10:00:00 UTC", "flooding")]


def test_a_ban_the_disk_refuses_changes_nothing(made):
    chat, fx, _ = made()
    login(chat, 1)
    fx.failing = True
    results = []
    chat.moderation.restrict(BAN, "ann", None, "", lambda *r: results.append(r))
    assert isinstance(results[0][0], OSError) and 1 not in fx.closed
    assert chat.moderation.listing(BAN) == []


def test_a_muted_say_is_neither_stored_nor_sent_until_the_mute_ends(made):
    chat, fx, _ = made(Restriction(MUTE, "", p.timestamp(WALL + 5), ""))
    login(chat, 1)
    chat.receive(1, {"type": "say", "text": "hello", "id": "x"})
    assert fx.last(1) == {"type": "error", "code": "muted", "id": "x",
                          "message": "muted until 2027-01-15 08:00:05 UTC"}
    assert fx.persisted == [] and not [f for f in fx.broadcasts if f["type"] == "message"]
    chat.advance(1005.0, WALL + 5)
    chat.receive(1, {"type": "say", "text": "hello"})
    assert [r.text for r in fx.persisted] == ["hello"]


@pytest.mark.parametrize("text", ["", "5", "m", "0s", "-1m", "1.5h", "2w", "36501d", "1 d", "٣m"])
def test_a_duration_is_a_whole_number_with_s_m_h_or_d(text):
    with pytest.raises(ValueError, match="not a DURATION"):
        parse_duration(text)


def test_durations_in_seconds():
    assert [parse_duration(t) for t in ("30s", "30m", "2h", "7d")] == [30, 1800, 7200, 604800]
