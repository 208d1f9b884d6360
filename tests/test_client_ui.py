"""What the chat client does with what its user gives it: lines of a pipe (bytes that
are no UTF-8, CRLF, `//`, history before a bot's lines), lines typed at the prompt
(too long, kept), passwords asked again, `/history` pages, an unreachable server."""

from __future__ import annotations

import json
import socket
import threading

from procs import WAIT, assert_exits_with, assert_exits_zero, serve
from scripted import WELCOME1, ScriptedConnection
from test_client import PASSWORD, pipe_client, terminal_client

REFUSED = 4  # README: a line of the pipe was refused


def said(out: list[str]) -> list[str]:
    """The texts of the message lines a pipe client printed."""
    return [line.split(": ", 1)[1] for line in out]


def test_pipe_skips_a_line_of_invalid_utf8_by_its_number_and_sends_the_rest(start_chat):
    _, port = start_chat()
    status, out, err = pipe_client(port, "bytes", b"first\nbad \xff\xfe line\nthird\n", "--register")
    assert status == REFUSED, err
    assert said(out) == ["first", "third"]
    assert "line 2 is not valid UTF-8: not sent" in err
    assert "Traceback" not in err


def test_pipe_refused_line_is_named_by_its_number_and_the_status_says_so(start_chat):
    _, port = start_chat()
    lines = ["before", "bad\x01line", "y" * 4001, "after"]
    status, out, err = pipe_client(port, "careful", lines, "--register")
    assert status == REFUSED
    assert said(out) == ["before", "after"]
    assert "line 2: " in err and "control characters" in err
    assert "line 3: message is 4001 characters; the limit is 4000: not sent" in err


def test_pipe_line_the_server_refuses_is_named_by_its_number_and_the_rest_goes_on():
    """This client checks a text as the server does, so the server's refusal needs a peer
    that refuses what it should not: a real socket speaking the protocol, one frame a turn."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        result: list = []
        lines = ["refused", "taken"]
        runner = threading.Thread(target=lambda: result.append(pipe_client(port, "bot", lines)))
        runner.start()
        server = ScriptedConnection(listener)
        login = server.answer(WELCOME1)
        assert login["type"] == "login" and "protocol" not in login  # a version 1 server gets none
        first = server.answer({"type": "ok", "op": "login", "username": "bot"},
                              {"type": "history", "messages": [], "more": False},
                              {"type": "users", "online": ["bot"], "count": 1, "more": False})
        second = server.answer({"type": "error", "code": "bad_request", "message": "no", "id": first["id"]})
        assert second["text"] == "taken"
        leaving = server.answer({"type": "message", "seq": 1, "ts": "2026-01-01T00:00:00.000Z", "from": "bot",
                                 "text": "taken", "id": second["id"]})
        assert leaving["type"] == "quit"
        server.close({"type": "bye"})
        runner.join(WAIT)
    [(status, out, err)] = result
    assert status == REFUSED
    assert said(out) == ["taken"]
    assert "line 1: the server rejected that request as malformed: not sent" in err


def test_pipe_crlf_line_end_is_not_part_of_the_message(start_chat):
    _, port = start_chat()
    status, out, err = pipe_client(port, "dos", b"one\r\ntwo\r\nin\rside\r\n", "--register")
    assert status == 0, err
    assert said(out) == ["one", "two", "in\\rside"]  # a CR inside a line stays (escaped on output)


def test_pipe_doubled_slash_means_what_it_means_at_the_prompt(start_chat):
    _, port = start_chat()
    status, out, err = pipe_client(port, "slash", ["//quit is a word", "/etc/hosts as it is"], "--register")
    assert status == 0, err
    assert said(out) == ["/quit is a word", "/etc/hosts as it is"]


def test_pipe_prints_history_before_its_lines_only_when_asked(start_chat):
    _, port = start_chat()
    assert pipe_client(port, "writer", ["old 1", "old 2", "old 3"], "--register")[0] == 0
    status, out, err = pipe_client(port, "bot", ["mine"], "--register")
    assert status == 0, err
    assert said(out) == ["mine"]
    status, out, err = pipe_client(port, "bot", ["mine again"], "--history", "2")
    assert status == 0, err
    assert said(out) == ["old 3", "mine", "mine again"]


def test_pipe_json_history_after_login_holds_only_what_was_asked(start_chat):
    _, port = start_chat()
    assert pipe_client(port, "writer", ["old 1", "old 2"], "--register")[0] == 0
    for extra, texts in ((["--register"], []), (["--history", "1"], ["old 2"])):
        status, out, _ = pipe_client(port, "jbot", [], "--json", *extra)
        assert status == 0
        [history] = [json.loads(line) for line in out if json.loads(line)["type"] == "history"]
        assert [m["text"] for m in history["messages"]] == texts
        assert history["more"] is True  # older ones exist: /history or a `history` request gets them


# -- at the prompt ---------------------------------------------------------------------------


def test_terminal_keeps_a_line_that_is_too_long_in_the_input(start_chat):
    _, port = start_chat()
    assert pipe_client(port, "lena", [], "--register")[0] == 0
    lena = terminal_client(port, "--user", "lena", "--password-env", "PW")
    try:
        lena.expect(r"lena( #general)?>")
        lena.send("x" * 4001 + "\r")
        lena.expect("message is 4001 characters; the limit is 4000")
        lena.send("\x7f\r")  # one character less, and it goes
        lena.expect("lena: xxxx")
        lena.sendline("/quit")
        assert_exits_zero(lena)
    finally:
        lena.close(force=True)
    status, out, _ = pipe_client(port, "lena", [], "--history", "1")
    assert status == 0 and said(out) == ["x" * 4000]


def test_terminal_register_asks_again_for_a_password_that_breaks_the_rules(start_chat):
    _, port = start_chat()
    pat = terminal_client(port, "--user", "pat", "--register")
    try:
        pat.expect("password")
        pat.sendline("short")
        pat.expect("Repeat for confirmation")
        pat.sendline("short")
        pat.expect("a password is 8 to 256 characters")
        pat.expect("password")
        pat.sendline(PASSWORD)
        pat.expect("Repeat for confirmation")
        pat.sendline("something else")
        pat.expect("do not match")
        pat.expect("password")
        pat.sendline(PASSWORD)
        pat.expect("Repeat for confirmation")
        pat.sendline(PASSWORD)
        pat.expect("logged in as pat")
        pat.sendline("/quit")
        assert_exits_zero(pat)
    finally:
        pat.close(force=True)


def test_terminal_wrong_password_may_be_retried_three_times_in_all(start_chat):
    _, port = start_chat()
    assert pipe_client(port, "quinn", [], "--register")[0] == 0
    quinn = terminal_client(port, "--user", "quinn")
    try:
        quinn.expect("password")
        quinn.sendline("not the password")
        quinn.expect("unknown user or wrong password")
        quinn.expect("password")
        quinn.sendline(PASSWORD)
        quinn.expect("logged in as quinn")
        quinn.sendline("/quit")
        assert_exits_zero(quinn)
    finally:
        quinn.close(force=True)
    quinn = terminal_client(port, "--user", "quinn")
    try:
        for _ in range(3):
            quinn.expect("password")
            quinn.sendline("still not it")
            quinn.expect("unknown user or wrong password")
        assert_exits_with(quinn, 1)
    finally:
        quinn.close(force=True)


def said_before_the_password(port: int, complaint: str) -> None:
    """A terminal client at `port` says `complaint` and exits 1 without asking a password."""
    ray = terminal_client(port, "--user", "ray", "--welcome-timeout", "1")
    try:
        ray.expect(complaint)
        assert "password" not in ray.before
        assert_exits_with(ray, 1)
    finally:
        ray.close(force=True)


def test_terminal_reports_an_unreachable_server_before_asking_the_password(start_chat):
    server, port = start_chat()
    server.kill()
    said_before_the_password(port, f"cannot connect to 127.0.0.1:{port}")


def test_terminal_reports_a_wrong_port_before_asking_the_password(data_dir):
    """The echo port: the probe reads no welcome, so nothing is asked and nothing is sent."""
    server, port = serve("echo", data_dir, "--no-repl")
    try:
        said_before_the_password(port, f"127.0.0.1:{port} is not a netlab chat server")
    finally:
        server.kill()


def test_terminal_history_pages_back_from_the_oldest_shown_set_apart(data_dir):
    server, port = serve("chat", data_dir, "--no-repl", "--history-size", "1")
    try:
        assert pipe_client(port, "bob", ["first", "second", "third"], "--register")[0] == 0
        assert pipe_client(port, "sam", [], "--register")[0] == 0
        sam = terminal_client(port, "--user", "sam", "--password-env", "PW")
        try:
            sam.expect("bob: third")
            sam.expect(r"sam( #general)?>")
            assert pipe_client(port, "bob", ["fourth"])[0] == 0
            sam.expect("bob: fourth")  # live, after what login showed
            sam.sendline("/history 5")
            sam.expect("── 2 earlier messages ──")
            sam.expect("bob: first")
            sam.expect("bob: second")
            sam.expect("── end of earlier messages ──")
            sam.sendline("/history")
            sam.expect("no older messages")
            sam.sendline("/quit")
            assert_exits_zero(sam)
        finally:
            sam.close(force=True)
        sam = terminal_client(port, "--user", "sam", "--password-env", "PW", "--history", "0")
        try:
            sam.expect(r"sam( #general)?>")
            sam.sendline("/history 1")  # nothing shown yet: the newest message
            sam.expect("── 1 earlier message ──")
            sam.expect("bob: fourth")
            sam.sendline("/quit")
            assert_exits_zero(sam)
        finally:
            sam.close(force=True)
    finally:
        server.kill()
