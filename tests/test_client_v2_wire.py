"""The chat client with a version 2 server, through its real driver and command line:
a scripted server on a real socket (tests/scripted.py) plays the server's part frame
by frame, including what a real one does not do on cue (drop a connection before the
echo of a line)."""

from __future__ import annotations

import io
import socket
import threading

import pexpect
import pytest
from procs import WAIT, assert_exits_zero
from scripted import WELCOME2, ScriptedConnection
from test_client import pipe_client, terminal_client

from netlab.wire import encode

QUESTIONS = ("current password:", "new password:", "new password again:")  # the space is a cursor move


def answer_passwd(child: pexpect.spawn, current: str, new: str) -> None:
    """Answer /passwd's three questions, each once it is asked: a line typed before the
    hidden prompt is up would be echoed by the terminal (and each question is drawn
    again as it is answered, so only the next one's own words will do)."""
    for question, answer in zip(QUESTIONS, (current, new, new), strict=True):
        child.expect_exact(question)
        child.sendline(answer)

TS = "2026-01-01T00:00:00.000Z"
OK = {"type": "ok", "op": "login", "username": "bot", "protocol": 2}
HISTORY = {"type": "history", "room": "general", "messages": [], "more": False}
USERS = {"type": "users", "room": "general", "online": ["bot"], "count": 1, "more": False}


def rooms(dev_last: int = 0) -> dict:
    dev = {"room": "dev", "topic": "", "private": True, "members": 2, "last_seq": dev_last, "read_seq": 0,
           "member": True}
    return {"type": "rooms", "rooms": [dev], "conversations": [], "more": False}


def run_pipe(lines: list[str], *args: str):
    """A listener, and a thread running a pipe client against it; join it for the result."""
    listener = socket.create_server(("127.0.0.1", 0))
    result: list = []
    port = listener.getsockname()[1]
    runner = threading.Thread(target=lambda: result.append(pipe_client(port, "bot", lines, *args)))
    runner.start()
    return listener, runner, result


def test_pipe_to_a_room_logs_in_with_version_2_and_marks_its_line_read_before_leaving():
    listener, runner, result = run_pipe(["hello dev"], "--room", "dev")
    with listener:
        server = ScriptedConnection(listener)
        login = server.answer(WELCOME2)
        assert login["protocol"] == 2
        say = server.answer(OK, HISTORY, USERS, rooms(dev_last=4))
        assert say["room"] == "dev" and say["text"] == "hello dev"
        message = {"type": "message", "seq": 5, "ts": TS, "from": "bot", "text": "hello dev", "room": "dev",
                   "id": say["id"]}
        assert server.answer(message) == {"type": "read", "seq": 5, "room": "dev"}
        assert server.answer()["type"] == "quit"
        server.close({"type": "bye"})
        runner.join(WAIT)
    [(status, out, err)] = result
    assert status == 0, err
    assert out[-1].endswith("] bot: hello dev")  # the current room's: no tag


def test_pipe_to_a_room_not_joined_says_so_and_sends_nothing():
    listener, runner, result = run_pipe(["lost"], "--room", "ops")
    with listener:
        server = ScriptedConnection(listener)
        server.answer(WELCOME2)
        with pytest.raises(AssertionError, match="closed"):  # having sent nothing
            server.answer(OK, HISTORY, USERS, rooms())
        runner.join(WAIT)
    [(status, out, err)] = result
    assert status == 1 and out == []
    assert "you are not in room ops (or there is no such room): join it first (/join ops" in err


def test_a_line_sent_again_after_a_reconnect_keeps_its_id_so_the_server_stores_it_once():
    listener, runner, result = run_pipe(["only once"], "--room", "dev")
    with listener:
        first = ScriptedConnection(listener)
        first.answer(WELCOME2)
        say = first.answer(OK, HISTORY, USERS, rooms(dev_last=1))
        first.close()  # gone before the echo: stored or not, the client cannot know
        second = ScriptedConnection(listener)
        assert second.answer(WELCOME2)["type"] == "login"
        again = second.answer(OK, HISTORY, USERS, rooms(dev_last=1))
        assert again == say and say["id"].startswith("c") and len(say["id"]) > 3  # this run's own prefix
        message = {"type": "message", "seq": 2, "ts": TS, "from": "bot", "text": "only once", "room": "dev",
                   "id": say["id"]}
        assert second.answer(message, skip=("read",))["type"] == "quit"
        second.close({"type": "bye"})
        runner.join(WAIT)
    [(status, out, err)] = result
    assert status == 0, err
    assert "reconnected as bot" in err


def test_terminal_prompt_follows_the_room_passwd_is_never_echoed_and_help_lists_all():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        bot = terminal_client(listener.getsockname()[1], "--user", "bot", "--password-env", "PW")
        bot.logfile_read = seen = io.StringIO()
        try:
            server = ScriptedConnection(listener)
            server.answer(WELCOME2)
            server.conn.sendall(b"".join(encode(frame) for frame in (OK, HISTORY, USERS, rooms())))
            bot.expect("bot #general>")
            bot.sendline("/join dev")
            assert server.answer() == {"type": "join", "room": "dev", "id": "join dev"}
            server.conn.sendall(encode({"type": "joined", "room": "dev", "topic": "plans", "private": True,
                                        "owner": "ann", "members": 2, "last_seq": 0, "read_seq": 0}))
            bot.expect(r"you are in #dev \(private, 2 members\): plans")
            bot.expect("bot #dev>")
            bot.sendline("/passwd")
            answer_passwd(bot, "old secret 1", "new secret 2")
            assert server.answer() == {"type": "password", "password": "old secret 1",
                                       "new_password": "new secret 2", "id": "passwd"}
            server.conn.sendall(encode({"type": "ok", "op": "password", "username": "bot", "protocol": 2}))
            bot.expect("password changed")
            assert "secret" not in seen.getvalue()
            bot.sendline("/help")
            for command in ("/join", "/create", "/go", "/query", "/msg", "/leave", "/invite", "/topic",
                            "/rooms", "/delete", "/passwd", "/users", "/history", "/quit"):
                bot.expect(command)
            for line, said in (("/invite", r"usage: /invite USER"), ("/topic " + "t" * 401, "at most 400"),
                               ("/go nowhere", "you are not in #nowhere"),
                               ("/msg bob", r"usage: /msg USER TEXT")):
                bot.sendline(line)
                bot.expect(said)
            bot.sendline("/quit")
            assert server.answer()["type"] == "quit"
            server.close({"type": "bye"})
            assert_exits_zero(bot)
        finally:
            bot.close(force=True)
