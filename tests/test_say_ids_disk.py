"""A version 2 `say`'s id survives a restart and kill -9, as its message does.

PROTOCOL.md, Negotiation: a `say` whose `id` the account already used in the same room or
conversation, within that room's last 1,000 messages, is not stored or broadcast again; this
session alone gets the first one's `message` again. A client resends what it never saw
acknowledged after a reconnect, and the server may have stopped in between: the ids are on
disk with their messages (say_ids.csv for rooms, inside direct.dat's encrypted records for
direct messages).
"""

from __future__ import annotations

import signal

import pytest
from disk_search import files_holding
from v2client import logged_in2, registered2

DM_ID = "dm-id-7731-zq"


def stop(server, how: str) -> None:
    if how == "kill -9":
        server.kill()
    else:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_a_say_resent_after_a_restart_is_answered_with_the_first_and_not_stored(start_chat, data_dir, how):
    server, port = start_chat("--rate-limit", "0")
    with registered2(port, "sid_a") as a, registered2(port, "sid_b") as b:
        a.create("sid-room")
        b.join("sid-room")
        assert a.say_in("sid-room", "in the room", id="r-1")["seq"] == 1
        assert a.say_in("general", "in general", id="g-1")["seq"] == 1
        a.send("say", text="to b", to="sid_b", id=DM_ID)
        assert a.wait_for("message", text="to b")["seq"] == 1
        b.wait_for("message", text="to b")
        b.sync()
    stop(server, how)
    server, port = start_chat("--rate-limit", "0", data=data_dir)
    with logged_in2(port, "sid_a") as a, logged_in2(port, "sid_b") as b:
        again = a.say_in("sid-room", "in the room", id="r-1")
        assert (again["seq"], again["id"]) == (1, "r-1")
        assert a.say_in("general", "in general", id="g-1")["seq"] == 1
        a.send("say", text="to b", to="sid_b", id=DM_ID)
        dm = a.wait_for("message", text="to b")
        assert (dm["seq"], dm["id"], dm["to"]) == (1, DM_ID, "sid_b")
        b.expect_nothing_pending()  # the other member got nothing of the three
        assert a.say_in("sid-room", "a new line", id="r-2")["seq"] == 2
        assert b.wait_for("message", room="sid-room")["text"] == "a new line"
        for where in ({"room": "sid-room"}, {"room": "general"}, {"with": "sid_b"}):
            a.send("history", limit=50, **where)
            texts = [m["text"] for m in a.wait_for("history", **where)["messages"]]
            assert len(texts) == len(set(texts)), (where, texts)
    stop(server, "SIGTERM")
    assert files_holding(data_dir, DM_ID) == []  # inside direct.dat's encrypted records only


def test_ids_older_than_the_last_1000_messages_are_forgotten_after_a_restart(start_chat, data_dir):
    server, port = start_chat("--rate-limit", "0")
    with registered2(port, "old_a") as a:
        a.create("old-room")
        a.say_in("old-room", "the first", id="old-1")
        for n in range(1000):
            a.send("say", text=f"line {n}", room="old-room", id=f"n-{n}")
        a.wait_for("message", room="old-room", seq=1001)
    server.kill()
    server, port = start_chat("--rate-limit", "0", data=data_dir)
    with logged_in2(port, "old_a") as a:
        assert a.say_in("old-room", "line 999", id="n-999")["seq"] == 1001  # still remembered
        assert a.say_in("old-room", "the first", id="old-1")["seq"] == 1002  # forgotten: stored
    stop(server, "SIGTERM")
    rows = (data_dir / "say_ids.csv").read_text().splitlines()
    # Compacted at start-up to seqs 2..1001, then the one line stored since.
    assert len([r for r in rows if r.startswith("old-room,")]) == 1001
