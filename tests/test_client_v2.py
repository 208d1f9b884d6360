"""The terminal client's rooms, direct messages and read markers, end to end against a
real version 2 server on a pty and on pipes."""

from __future__ import annotations

import io
import json
import signal

import pexpect
from procs import assert_exits_with, assert_exits_zero, serve
from test_client import PASSWORD, client, pipe_client, terminal_client
from test_client_v2_wire import answer_passwd
from v2client import logged_in2


def at_the_prompt(port: int, name: str, *others: str) -> tuple[pexpect.spawn, io.StringIO]:
    """`name` (and `others`) registered, `name` at a prompt in general; what it has shown."""
    for user in (name, *others):
        assert pipe_client(port, user, [], "--register")[0] == 0
    child = terminal_client(port, "--user", name, "--password-env", "PW")
    child.logfile_read = seen = io.StringIO()
    child.expect(f"{name} #general>")
    return child, seen


def test_terminal_rooms_direct_messages_unread_counts_and_deletion(start_chat):
    _, port = start_chat()
    alice, seen = at_the_prompt(port, "alice", "bob")
    try:
        alice.sendline("/create --private dev our plans")
        alice.expect(r"you are in #dev \(private, 1 members\): our plans")
        alice.expect("alice #dev>")
        alice.sendline("/invite bob")
        alice.expect("invited")
        assert pipe_client(port, "bob", ["hi in dev"], "--room", "dev")[0] == 0
        alice.expect(r"\] bob: hi in dev")  # the current room: no tag
        alice.sendline("/go general")
        alice.expect("alice #general>")
        assert pipe_client(port, "bob", ["again in dev"], "--room", "dev")[0] == 0
        alice.expect(r"\[#dev\] bob: again in dev")
        alice.sendline("/rooms")
        alice.expect(r"#dev \(private, 2 members\): 1 unread — our plans")
        alice.sendline("/msg bob psst")
        alice.expect(r"\[@bob\] alice: psst")
        alice.sendline("/query bob")
        alice.expect("alice @bob>")
        alice.sendline("/delete")
        alice.expect(r"\(message 1 of alice deleted\)")
        shown = len(seen.getvalue())
        alice.sendline("/help")
        alice.expect("a message starting with /")  # /help's last line; its order is its own
        listed = seen.getvalue()[shown:]
        for command in ("/join", "/leave", "/create", "/invite", "/topic", "/rooms", "/msg", "/query", "/go",
                        "/delete", "/passwd"):
            assert f"{command} " in listed, command
        alice.sendline("/go nowhere")
        alice.expect("you are not in #nowhere")
        alice.sendline("/join Bad!")
        alice.expect("a room name is 1 to 32")
        alice.sendline("/quit")
        assert_exits_zero(alice)
    finally:
        alice.close(force=True)


def test_terminal_passwd_asks_without_echo_and_the_new_password_logs_in(start_chat):
    _, port = start_chat()
    carol, seen = at_the_prompt(port, "carol")
    try:
        carol.sendline("/passwd")
        answer_passwd(carol, "not the password", "brand new password")
        carol.expect("the current password is wrong; nothing changed")
        carol.sendline("/passwd")
        answer_passwd(carol, PASSWORD, "brand new password")
        carol.expect("password changed")
        assert "brand new password" not in seen.getvalue()
        carol.sendline("/quit")
        assert_exits_zero(carol)
    finally:
        carol.close(force=True)
    bot = client(port, "--user", "carol", password="brand new password")
    bot.command("with the new one")
    bot.proc.stdin.close()
    assert bot.wait() == 0


def test_pipe_room_not_joined_or_missing_is_said_and_exits_one(start_chat):
    _, port = start_chat()
    status, out, err = pipe_client(port, "dave", ["lost"], "--register", "--room", "nowhere")
    assert status == 1 and out == []
    assert "you are not in room nowhere (or there is no such room): join it first" in err


def test_pipe_to_a_user_sends_direct_messages_both_see(start_chat):
    _, port = start_chat()
    assert pipe_client(port, "erin", [], "--register")[0] == 0
    status, out, err = pipe_client(port, "fred", ["psst"], "--register", "--to", "erin")
    assert status == 0, err
    assert out[-1].endswith("fred: psst")
    status, out, _ = pipe_client(port, "erin", ["hello fred"], "--to", "fred", "--json")
    assert status == 0
    [rooms] = [json.loads(line) for line in out if json.loads(line)["type"] == "rooms"]
    assert rooms["conversations"][0]["with"] == "fred" and rooms["conversations"][0]["last_seq"] == 1
    status, _, err = pipe_client(port, "erin", ["to nobody"], "--to", "nobody")
    assert status == 4 and "line 1: there is no user of that name: not sent" in err


def test_a_message_read_on_one_terminal_is_read_on_the_other(start_chat):
    _, port = start_chat()
    assert pipe_client(port, "gina", [], "--register")[0] == 0
    # The other device is a bare session: a second client would read the message itself,
    # and whichever marker came first would leave the other nothing to announce.
    watcher = logged_in2(port, "gina", PASSWORD)
    reader = terminal_client(port, "--user", "gina", "--password-env", "PW")
    try:
        reader.expect("gina #general>")
        assert pipe_client(port, "hank", ["read me"], "--register")[0] == 0
        reader.expect("hank: read me")  # shown in the current room: read
        assert watcher.wait_for("read", room="general")["seq"] == 1
        reader.sendline("/quit")
        assert_exits_zero(reader)
    finally:
        reader.close(force=True)
        watcher.close()


def test_terminal_reconnect_fills_a_room_gap_after_a_restart(tmp_path):
    data_dir = tmp_path / "data"
    server, port = serve("chat", data_dir, "--no-repl")
    ivy, seen = at_the_prompt(port, "ivy", "jack")
    try:
        ivy.sendline("/create ops")
        ivy.expect("ivy #ops>")
        assert pipe_client(port, "jack", [], "--room", "ops")[0] == 1  # not joined yet
        ivy.sendline("/go general")
        ivy.expect("ivy #general>")
        jack = terminal_client(port, "--user", "jack", "--password-env", "PW")
        jack.expect("jack #general>")  # logged in: a command typed before is refused, not queued
        jack.sendline("/join ops")
        jack.expect("jack #ops>")
        jack.sendline("/quit")
        assert_exits_zero(jack)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        ivy.expect("reconnecting in")
        server, _ = serve("chat", data_dir, "--no-repl", "--port", str(port))
        assert pipe_client(port, "jack", ["while away 1", "while away 2"], "--room", "ops")[0] == 0
        ivy.expect("reconnected as ivy")
        ivy.expect(r"\[#ops\] jack: while away 2")
        assert pipe_client(port, "jack", ["after"], "--room", "ops")[0] == 0
        ivy.expect(r"\[#ops\] jack: after")
        for line in ("jack: while away 1", "jack: while away 2", "jack: after"):
            assert seen.getvalue().count(line) == 1, line
        ivy.sendline("/quit")
        assert_exits_with(ivy, 0)
    finally:
        ivy.close(force=True)
        server.kill()
