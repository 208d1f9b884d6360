"""The operator's `remove NAME` and `delete ROOM SEQ` (CLI.md), through the console's pipe."""

from __future__ import annotations

import pytest
from chatclient import connect, registered
from disk_search import files_holding
from test_chat_console import marked
from v2client import registered2

from netlab.store.records import CLIENTS_FILE


@pytest.fixture
def console(start_chat):
    return start_chat("--rate-limit", "0", repl=True)


def accounts_on_disk(data_dir) -> int:
    return len((data_dir / CLIENTS_FILE).read_bytes().splitlines()) - 1


def test_remove_asks_then_frees_the_name_and_keeps_the_messages(start_chat, data_dir):
    server, port = start_chat("--rate-limit", "0", repl=True)
    kim, lou = registered2(port, "kim"), registered2(port, "lou")
    kim.create("kims-room")
    lou.join("kims-room")
    kim.say_in("general", "kim was here")
    assert accounts_on_disk(data_dir) == 2
    start = len(server.out)
    server.command("remove KIM")
    server.out.wait_for(r"^Remove the account KIM\? \[y/N\]$", start=start)
    server.command("n")
    server.out.wait_for(r"^remove cancelled: nothing changed$", start=start)
    assert accounts_on_disk(data_dir) == 2
    server.command("remove kim")
    server.out.wait_for(r"^Remove the account kim\? \[y/N\]$", start=start + 2)
    server.command("yes")
    server.out.wait_for(r"^removed kim: 1 session\(s\) ended; the name is free", start=start)
    assert kim.wait_for("kicked") == {"type": "kicked", "reason": "account removed"}
    assert lou.wait_for("member", room="kims-room") == {"type": "member", "room": "kims-room",
                                                         "username": "kim", "change": "left"}
    assert accounts_on_disk(data_dir) == 1
    marked(server, "remove --yes kim", r"^error: remove: no account is named 'kim'; nothing changed")
    registered(port, "zed").close()
    start = len(server.out)
    marked(server, "remove zed --yes", r"^removed zed: 0 session\(s\) ended")  # no question asked
    assert not any("[y/N]" in line for line in server.out.lines[start:])
    with connect(port) as again:
        again.send("login", username="kim", password="correct horse battery")
        assert again.expect_error("bad_credentials")
    new_kim = registered(port, "Kim")
    assert [m["text"] for m in new_kim.history(limit=10)["messages"]] == ["kim was here"]
    marked(server, "rooms", r"^#kims-room  public  owner=-  members=1  online=1  last seq=0$")
    server.command("shutdown")
    assert server.wait() == 0
    server, port = start_chat("--rate-limit", "0", repl=True)
    with registered2(port, "mia") as mia:
        mia.send("rooms", all=True)
        assert [(r["room"], r["members"]) for r in mia.expect("rooms")["rooms"]] == [("general", 3),
                                                                                   ("kims-room", 1)]


def test_delete_erases_a_message_from_every_file_and_tells_version_2_sessions(console, data_dir):
    server, port = console
    ned, old = registered2(port, "ned"), registered(port, "old")
    old.ignore = {"join", "leave", "message"}
    ned.create("ned-room")
    ned.say_in("general", "fine")
    leaked = "hunter2-correct-horse-leaked"
    ned.say_in("general", leaked)
    ned.say_in("ned-room", leaked)
    marked(server, "delete general 2", r"^deleted message 2 of #general$")
    assert ned.wait_for("deleted", room="general") == {"type": "deleted", "seq": 2, "room": "general"}
    marked(server, "delete #ned-room 1", r"^deleted message 1 of #ned-room$")
    assert ned.wait_for("deleted", room="ned-room") == {"type": "deleted", "seq": 1, "room": "ned-room"}
    assert files_holding(data_dir, leaked) == []
    assert [m["text"] for m in old.history(limit=10)["messages"]] == ["fine"]
    marked(server, "delete general 2", r"^error: delete: message 2 of #general is deleted already; nothing")
    marked(server, "delete general 9", r"^error: delete: #general has no message 9; nothing changed")
    marked(server, "delete nowhere 1", r"^error: delete: no such room: 'nowhere'; nothing changed")
    marked(server, "delete general two", r"^error: delete needs a ROOM and a SEQ")
    marked(server, "status", r"^last actions: delete #general message 2; delete #ned-room message 1$")
