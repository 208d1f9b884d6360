"""The operator's `rooms` and `topic ROOM TEXT` (CLI.md), through the console's pipe."""

from __future__ import annotations

import pytest
from test_chat_console import marked
from v2client import registered2


@pytest.fixture
def console(start_chat):
    return start_chat("--rate-limit", "0", repl=True)


def test_rooms_lists_every_room_with_kind_owner_members_online_and_last_seq(console):
    server, port = console
    with registered2(port, "op_ann") as ann, registered2(port, "op_bo") as bo:
        ann.create("op-public")
        ann.create("op-hidden", private=True)
        bo.join("op-public")
        ann.say_in("op-public", "one")
        ann.say_in("op-public", "two")
        start = len(server.out)
        marked(server, "rooms", r"^3 room\(s\)$")
        lines = server.out.lines[start:]
    assert lines[:3] == [
        "#general  public  owner=-  members=2  online=2  last seq=0",
        "#op-hidden  private  owner=op_ann  members=1  online=1  last seq=0",
        "#op-public  public  owner=op_ann  members=2  online=2  last seq=2",
    ]


def test_topic_as_the_operator_reaches_the_members_by_operator(console):
    server, port = console
    with registered2(port, "tp_ann") as ann, registered2(port, "tp_out") as out:
        ann.create("tp-room", private=True)
        marked(server, "topic tp-room  Exams  on Friday, room 4", r"^topic of #tp-room set$")
        assert ann.wait_for("topic") == {"type": "topic", "room": "tp-room",
                                         "text": "Exams  on Friday, room 4", "by": "operator"}
        out.expect_nothing_pending()
        marked(server, "topic general Welcome, class", r"^topic of #general set$")
        for client in (ann, out):
            assert client.wait_for("topic", room="general")["by"] == "operator"
        out.send("rooms")
        assert out.expect("rooms")["rooms"][0]["topic"] == "Welcome, class"


def test_topic_of_no_room_or_without_text_changes_nothing(console):
    server, _ = console
    marked(server, "topic no-such-room hello", r"no such room")
    marked(server, "topic general", r"^error: topic needs a ROOM and a TEXT")
    marked(server, "topic Bad!Name hello", r"room")
    marked(server, "help", r"^\s+topic ROOM TEXT\s+Chat: set a room's topic")


def test_the_topic_of_general_outlives_a_restart(console, start_chat, data_dir):
    server, _ = console
    marked(server, "topic general Welcome back", r"^topic of #general set$")
    server.command("shutdown")
    assert server.wait() == 0
    _, port = start_chat()  # rooms.csv's row of general is one the next start reads
    with registered2(port, "tp_again") as again:
        again.send("rooms")
        assert again.wait_for("rooms")["rooms"][0]["topic"] == "Welcome back"
