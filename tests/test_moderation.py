"""The operator's moderation commands (CLI.md), through the console's pipe, on real servers:
ban, unban, bans, mute, unmute, kick with a reason, and what the log and `status` say."""

from __future__ import annotations

import pytest
from chatclient import PASSWORD, Closed, connect, logged_in, registered
from procs import wait_until
from test_chat_console import marked
from v2client import V2Client, registered2

from netlab.store.moderation_file import MODERATION_FILE


@pytest.fixture
def console(start_chat):
    return start_chat("--rate-limit", "0", repl=True)


def login_answer(port: int, name: str, password: str = PASSWORD) -> dict:
    """The first frame a login gets (an `ok`, or an error), on a connection of its own."""
    with connect(port) as client:
        client.send("login", username=name, password=password)
        return client.recv()


def test_a_ban_ends_the_sessions_and_refuses_the_right_password_only(console, data_dir):
    server, port = console
    ann, phone = registered(port, "Ann"), logged_in(port, "ann")
    registered(port, "bo").close()
    marked(server, "ban ANN 2h  posted a password, twice", r"^banned ANN for 7200 s: 2 session\(s\) ended$")
    for session in (ann, phone):
        session.ignore = {"join", "leave"}
        fatal = session.expect_fatal("banned")
        assert "until 20" in fatal["message"] and fatal["message"].endswith(": posted a password, twice")
    refused = login_answer(port, "ann")
    assert refused["code"] == "banned" and refused["fatal"] is True
    assert "posted a password, twice" in refused["message"]
    assert login_answer(port, "ann", "wrong password")["code"] == "bad_credentials"
    assert login_answer(port, "bo")["type"] == "ok"
    marked(server, "bans", r"^1 ban\(s\) in force$")
    said = "by the console  reason: posted a password, twice"
    assert any(line.startswith("Ann  until 20") and line.endswith(said) for line in server.out.lines)
    marked(server, "status", r"^moderation: 1 ban\(s\), 0 mute\(s\) in force$")
    marked(server, "status", r"^last actions: ban Ann until 20")
    log = (data_dir / "chat.log").read_text()
    assert "moderation by the console: ban 'Ann' until 20" in log and PASSWORD not in log
    marked(server, "unban ann", r"^unbanned ann$")
    assert login_answer(port, "ann")["type"] == "ok"
    marked(server, "bans", r"^0 ban\(s\) in force$")


def test_a_ban_and_a_mute_outlive_a_restart_and_unban_too(start_chat, data_dir):
    server, port = start_chat("--rate-limit", "0", repl=True)
    registered(port, "cy").close()
    registered(port, "dee").close()
    registered(port, "eve").close()
    registered(port, "gil").close()
    marked(server, "ban cy", r"^banned cy until lifted: 0 session\(s\) ended$")
    marked(server, "ban gil 7d  spam", r"^banned gil for 604800 s")
    gil_line = marked(server, "bans", r"^gil  until 20.*$")[0]
    marked(server, "ban eve 7d", r"^banned eve for 604800 s")
    marked(server, "mute dee", r"^muted dee until lifted$")
    marked(server, "unban eve", r"^unbanned eve$")
    assert (data_dir / MODERATION_FILE).stat().st_mode & 0o777 == 0o600
    server.command("shutdown")
    assert server.wait() == 0
    server, port = start_chat("--rate-limit", "0", repl=True)
    assert login_answer(port, "cy")["code"] == "banned"
    assert login_answer(port, "eve")["type"] == "ok"
    assert login_answer(port, "gil")["code"] == "banned"
    assert marked(server, "bans", r"^gil  until 20.*$")[0] == gil_line  # the same end, to the second
    with logged_in(port, "dee") as dee:
        dee.send("say", text="still here?", id="m1")
        assert dee.expect_error("muted", id="m1")["message"].startswith("muted until the operator lifts it")
    marked(server, "unban cy", r"^unbanned cy$")
    server.command("shutdown")
    assert server.wait() == 0
    _, port = start_chat("--rate-limit", "0")
    assert login_answer(port, "cy")["type"] == "ok"


def test_a_ban_ends_by_itself_after_its_duration(console):
    server, port = console
    registered(port, "flo").close()
    marked(server, "ban flo 1s", r"^banned flo for 1 s")
    assert login_answer(port, "flo")["code"] == "banned"
    wait_until(lambda: login_answer(port, "flo")["type"] == "ok", interval=0.1)
    marked(server, "bans", r"^0 ban\(s\) in force$")


def test_a_muted_account_says_nothing_in_rooms_dms_v1_or_v2_until_it_ends(console, data_dir):
    server, port = console
    gus, hal = registered(port, "gus"), registered2(port, "hal")
    gus.ignore = {"join", "leave"}
    gus2 = V2Client(port)
    gus2.login2("gus")
    gus2.create("gus-room")
    marked(server, "mute gus 1m", r"^muted gus for 60 s$")
    gus.send("say", text="secret one", id="a")
    assert gus.expect_error("muted", id="a")["message"].startswith("muted until 20")
    for frame in ({"room": "gus-room"}, {"to": "hal"}, {}):
        gus2.send("say", text="secret two", id="b", **frame)
        assert gus2.expect_error("muted", id="b")
    assert hal.sync() == [] and gus.sync() == []
    assert "secret" not in (data_dir / "history.csv").read_text()
    marked(server, "unmute gus", r"^unmuted gus$")
    assert gus.say("heard again")["text"] == "heard again"
    marked(server, "mute gus 1s", r"^muted gus for 1 s$")

    def heard() -> bool:
        gus2.send("say", text="back", room="gus-room", id="c")
        return gus2.recv()["type"] == "message"

    wait_until(heard, interval=0.1)


def test_kick_with_a_reason_puts_it_in_kicked(console):
    server, port = console
    ivy = registered(port, "ivy")
    marked(server, "kick IVY  take a break, please", r"^kicked IVY: 1 session\(s\) ended$")
    assert ivy.expect("kicked") == {"type": "kicked", "reason": "take a break, please"}
    with pytest.raises(Closed):
        ivy.recv()


def test_an_unknown_name_or_a_bad_duration_is_one_line_and_changes_nothing(console, data_dir):
    server, port = console
    registered(port, "jo").close()
    before = (data_dir / MODERATION_FILE).read_bytes()
    for command, answer in [("ban nobody 2h", r"^error: ban: no account is named 'nobody'; nothing changed"),
                            ("ban jo 2x", r"^error: ban: '2x' is not a DURATION"),
                            ("ban jo 0m", r"^error: ban: '0m' is not a DURATION"),
                            ("mute jo 99999999999d", r"^error: mute: '99999999999d' is not a DURATION"),
                            ("mute jo 5m loud", r"^error: mute takes a NAME and a DURATION only"),
                            ("unban jo", r"^error: unban: jo is not banned; nothing changed"),
                            ("unmute jo", r"^error: unmute: jo is not muted; nothing changed"),
                            ("ban jo 1h " + "x" * 4001, r"^error: ban: a REASON is at most 4000 characters"),
                            ("kick jo " + "x" * 4001, r"^error: kick: a REASON is at most 4000 characters"),
                            ("ban", r"^error: ban needs a NAME \(type 'help' for the commands\)$")]:
        start = len(server.out)
        marked(server, command, answer)
        marked(server, "bans", r"^0 ban\(s\) in force$")
        assert len(server.out.lines[start:]) == 2, server.out.lines[start:]
    assert (data_dir / MODERATION_FILE).read_bytes() == before
    assert login_answer(port, "jo")["type"] == "ok"
    for usage in (r"kick NAME \[REASON\]", r"ban NAME \[DURATION\] \[REASON\]", "unban NAME", "bans",
                  r"mute NAME \[DURATION\]", "unmute NAME", r"remove NAME \[--yes\]", "delete ROOM SEQ"):
        marked(server, "help", rf"^  {usage}\s+Chat: ")
