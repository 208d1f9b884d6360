"""The chat and echo clients end to end, against a real server subprocess."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pexpect
import pytest
from procs import WAIT, Netlab, assert_exits_zero, has_ipv6_loopback, serve, spawn_terminal, wait_until

PASSWORD = "correct horse"


@pytest.fixture
def chat(data_dir):
    server, port = serve("chat", data_dir, "--no-repl")
    yield server, port
    server.kill()


def client(port: int, *args: str, password: str = PASSWORD) -> Netlab:
    return Netlab("chat", "connect", "--port", str(port), "--password-env", "PW", *args,
                  env={"PW": password})


def pipe_client(port: int, user: str, lines: list[str] | bytes, *args: str) -> tuple[int, list[str], str]:
    """`netlab chat connect` fed `lines` (each ended by LF), or exactly the bytes given, on a pipe."""
    data = lines if isinstance(lines, bytes) else "".join(f"{line}\n" for line in lines).encode()
    proc = subprocess.run(
        [sys.executable, "-m", "netlab", "chat", "connect", "--port", str(port), "--user", user,
         "--password-env", "PW", *args],
        input=data, capture_output=True, env={**os.environ, "PW": PASSWORD}, timeout=WAIT,
    )
    return proc.returncode, proc.stdout.decode().splitlines(), proc.stderr.decode()


def test_pipe_delivers_every_line_in_order_and_exits_zero(chat):
    _, port = chat
    lines = [f"line {n}" for n in range(30)]  # more than the default burst of 20
    status, out, err = pipe_client(port, "bot", lines, "--register")
    assert status == 0, err
    assert [line.split(": ", 1)[1] for line in out] == lines
    status, out, _ = pipe_client(port, "reader", [], "--register", "--history", "30")
    assert status == 0
    assert [line.split(": ", 1)[1] for line in out] == lines  # the history after login


def test_pipe_gives_no_hint_about_slash_commands_it_does_not_have(data_dir):
    server, port = serve("chat", data_dir, "--no-repl", "--history-size", "1")
    try:
        assert pipe_client(port, "bob", ["first", "second"], "--register")[0] == 0
        status, out, err = pipe_client(port, "reader", [], "--register", "--history", "1")
        assert status == 0 and [line.split(": ", 1)[1] for line in out] == ["second"]
        assert "/history" not in err and "older messages" not in err, err
    finally:
        server.kill()


def test_pipe_json_prints_raw_frames(chat):
    import json

    _, port = chat
    status, out, _ = pipe_client(port, "jsonbot", ["hi there"], "--register", "--json")
    assert status == 0
    frames = [json.loads(line) for line in out]
    assert [f["type"] for f in frames][:4] == ["welcome", "ok", "history", "users"]
    said = [f for f in frames if f["type"] == "message"]
    assert said[0]["text"] == "hi there" and said[0]["from"] == "jsonbot"
    assert frames[-1]["type"] == "bye"


def test_pipe_ctrl_c_leaves_cleanly_with_status_zero(chat):
    _, port = chat
    assert pipe_client(port, "kim", [], "--register")[0] == 0
    kim = client(port, "--user", "kim")  # stdin stays open, as `tail -f log | netlab ...`
    try:
        kim.err.wait_for("logged in as kim")
        kim.signal(signal.SIGINT)
        assert kim.wait() == 0  # README.md: 0 after Ctrl-C
        assert "Aborted" not in kim.err.text()
    finally:
        kim.kill()


def test_wrong_password_fails_loudly(chat):
    _, port = chat
    assert pipe_client(port, "carol", [], "--register")[0] == 0
    proc = client(port, "--user", "carol", password="not the password")
    proc.proc.stdin.close()
    assert proc.wait() == 1
    proc.err.wait_for("unknown user or wrong password")
    proc.kill()


def test_unreachable_server_fails_loudly(chat):
    server, port = chat
    server.kill()
    status, _, err = pipe_client(port, "nobody", ["x"])
    assert status == 1 and "cannot connect" in err


def test_reconnect_after_restart_misses_nothing_and_doubles_nothing(tmp_path):
    data_dir = tmp_path / "data"
    server, port = serve("chat", data_dir, "--no-repl")
    assert pipe_client(port, "writer", [], "--register")[0] == 0
    listener = client(port, "--user", "listener", "--register")
    try:
        listener.out.wait_for(r"^$|.*", 0) if False else None
        listener.err.wait_for("logged in as listener")
        assert pipe_client(port, "writer", ["before restart"])[0] == 0
        listener.out.wait_for("writer: before restart")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        listener.err.wait_for("shutting down")
        server, _ = serve("chat", data_dir, "--no-repl", "--port", str(port))
        assert pipe_client(port, "writer", ["while away 1", "while away 2"])[0] == 0
        listener.err.wait_for("reconnected as listener")
        listener.command("back again")
        listener.out.wait_for("listener: back again")
        said = [line.split(": ", 1)[1] for line in listener.out.lines if "writer: " in line]
        assert said == ["before restart", "while away 1", "while away 2"]
    finally:
        listener.kill()
        server.kill()


def test_kicked_client_does_not_reconnect(data_dir):
    server, port = serve("chat", data_dir)
    listener = client(port, "--user", "dave", "--register")
    try:
        listener.err.wait_for("logged in as dave")
        server.command("kick dave")
        listener.err.wait_for("kicked by the operator")
        assert listener.wait() != 0
        assert "reconnecting" not in listener.err.text()
    finally:
        listener.kill()
        server.kill()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_clients_take_an_ipv6_host_in_brackets_as_servers_print_it(data_dir):
    server, port = serve("chat", data_dir, "--no-repl", "--host", "::1")
    try:
        server.out.wait_for(rf"listening on \[::1\]:{port}")
        status, out, err = pipe_client(port, "v6", ["over ipv6"], "--register", "--host", "[::1]")
        assert status == 0, err
        assert out[-1].endswith("v6: over ipv6")
    finally:
        server.kill()


def test_a_throttled_login_is_tried_again_later_and_later_with_the_reason(chat):
    from chatclient import connect

    _, port = chat
    with connect(port) as guesser:
        for _ in range(5):  # PROTOCOL.md: after 5 failures a name is throttled for 60 s
            guesser.send("login", username="mia", password="wrong password")
            guesser.expect_error("bad_credentials")
    mia = client(port, "--user", "mia")
    try:
        waits = []
        for _ in range(3):
            match, _ = mia.err.wait_for(r"refused the login for now \(too many failed logins.*\); "
                                        r"trying again in ([\d.]+) s", start=len(waits))
            waits.append(float(match.group(1)))
        assert waits == [0.5, 1.0, 2.0]  # not twice a second for that minute
    finally:
        mia.kill()


def test_a_throttle_outlasting_the_auth_timeout_means_a_new_connection_not_an_exit(start_chat):
    from chatclient import connect

    _, port = start_chat("--auth-timeout", "1")
    with connect(port) as guesser:
        for _ in range(5):
            guesser.send("login", username="noor", password="wrong password")
            guesser.expect_error("bad_credentials")
    noor = client(port, "--user", "noor")
    try:
        _, at = noor.err.wait_for("connection lost .*throttled.*; reconnecting in")
        noor.err.wait_for("refused the login for now", start=at)  # tried again, still there
        assert noor.proc.poll() is None
    finally:
        noor.kill()


# -- the terminal client ------------------------------------------------------------------


def terminal_client(port: int, *args: str) -> pexpect.spawn:
    return spawn_terminal("chat", "connect", "--port", str(port), *args, env={"PW": PASSWORD},
                          columns=150)


def test_terminal_register_chat_history_users_and_errors(data_dir):
    server, port = serve("chat", data_dir, "--no-repl", "--history-size", "1")
    assert pipe_client(port, "bob", ["first", "second", "third"], "--register")[0] == 0
    alice = terminal_client(port)
    try:
        alice.expect("login or register")
        alice.sendline("register")
        alice.expect("username")
        alice.sendline("alice")
        alice.expect("password")
        alice.sendline(PASSWORD)
        alice.expect("Repeat for confirmation")
        alice.sendline(PASSWORD)
        alice.expect("logged in as alice")
        alice.expect(r"bob: third")  # --history-size 1
        alice.expect(r"\(older messages: /history\)")
        alice.expect(r"alice( #general)?>")
        alice.sendline("/history 1")  # pages further back each time
        alice.expect(r"bob: second")
        alice.sendline("/history 1")
        alice.expect(r"bob: first")
        assert pipe_client(port, "bob", ["hello alice"])[0] == 0
        alice.expect(r"\[\d\d:\d\d:\d\d\] bob: hello alice")
        alice.sendline("hi bob")
        alice.expect(r"alice: hi bob")
        alice.sendline("/users")
        alice.expect(r"online \(1\): alice")
        alice.sendline("/frobnicate")
        alice.expect("unknown command /frobnicate")
        for argument in ("abc", "0", "\u00b2"):  # '²' is a digit to str.isdigit, not to int()
            alice.sendline(f"/history {argument}")
            alice.expect(r"usage: /history \[N\]")
        alice.sendline("//frobnicate is not a command")  # a doubled slash sends the line
        alice.expect(r"alice: /frobnicate is not a command")
        alice.sendline("/quit")
        assert_exits_zero(alice)
    finally:
        alice.close(force=True)
        server.kill()


def test_terminal_register_flag_without_user_asks_only_the_name(chat):
    _, port = chat
    jo = terminal_client(port, "--register")
    try:
        jo.expect("username")  # not "login or register", whose default would be login
        assert "login or register" not in jo.before
        jo.sendline("jo")
        jo.expect("password")
        jo.sendline(PASSWORD)
        jo.expect("Repeat for confirmation")
        jo.sendline(PASSWORD)
        jo.expect("logged in as jo")
        jo.sendline("/quit")
        assert_exits_zero(jo)
    finally:
        jo.close(force=True)


def test_terminal_reconnects_after_restart_without_gaps_or_doubles(tmp_path):
    data_dir = tmp_path / "data"
    server, port = serve("chat", data_dir, "--no-repl")
    assert pipe_client(port, "writer", ["first"], "--register")[0] == 0
    assert pipe_client(port, "gina", [], "--register")[0] == 0
    gina = terminal_client(port, "--user", "gina", "--password-env", "PW")
    gina.logfile_read = seen = io.StringIO()
    try:
        gina.expect("writer: first")
        gina.expect(r"gina( #general)?>")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        gina.expect("reconnecting in")
        server, _ = serve("chat", data_dir, "--no-repl", "--port", str(port))
        assert pipe_client(port, "writer", ["while away"])[0] == 0
        gina.expect("reconnected as gina")
        gina.expect("writer: while away")
        gina.sendline("back")
        gina.expect("gina: back")
        assert pipe_client(port, "writer", ["after"])[0] == 0
        gina.expect("writer: after")
        for line in ("writer: first", "writer: while away", "writer: after"):
            assert seen.getvalue().count(line) == 1, line  # nothing missed, nothing twice
    finally:
        gina.close(force=True)
        server.kill()


def test_terminal_ctrl_c_leaves_cleanly(chat):
    _, port = chat
    assert pipe_client(port, "erin", [], "--register")[0] == 0
    erin = terminal_client(port, "--user", "erin", "--password-env", "PW")
    try:
        erin.expect(r"erin( #general)?>")
        erin.sendintr()
        assert_exits_zero(erin)
    finally:
        erin.close(force=True)


def test_terminal_ends_by_itself_when_the_login_fails(chat):
    _, port = chat
    assert pipe_client(port, "hal", [], "--register")[0] == 0
    hal = spawn_terminal("chat", "connect", "--port", str(port), "--user", "hal", "--password-env", "PW",
                         env={"PW": "not the password"})
    try:
        hal.expect("unknown user or wrong password")
        hal.expect(pexpect.EOF)  # no key pressed: the prompt must not wait for one
        hal.close()
        assert hal.exitstatus == 1
    finally:
        hal.close(force=True)


def test_terminal_ends_by_itself_when_kicked(data_dir):
    server, port = serve("chat", data_dir)
    assert pipe_client(port, "ivy", [], "--register")[0] == 0
    ivy = terminal_client(port, "--user", "ivy", "--password-env", "PW")
    try:
        ivy.expect(r"online \(1\): ivy")
        ivy.send("half a line")
        server.command("kick ivy")
        ivy.expect("kicked by the operator")
        ivy.expect(pexpect.EOF)
        ivy.close()
        assert ivy.exitstatus == 3
    finally:
        ivy.close(force=True)
        server.kill()


def test_a_message_cannot_pass_for_a_line_of_someone_else(chat):
    """CR and LF are legal in a text; printed raw, a CR returns the cursor and the
    rest of the message overwrites its start: a forged line from `mallory`."""
    _, port = chat
    assert pipe_client(port, "bob", ["innocent\rmallory: send me your password"], "--register")[0] == 0
    assert pipe_client(port, "lara", [], "--register")[0] == 0
    status, out, _ = pipe_client(port, "lara", [], "--history", "1")
    assert status == 0 and out[-1].endswith("bob: innocent\\rmallory: send me your password")
    lara = terminal_client(port, "--user", "lara", "--password-env", "PW")
    try:
        lara.expect(r"bob: innocent\r\n {4}mallory: send me your password")  # a line of bob's, indented
        lara.sendline("/quit")
        assert_exits_zero(lara)
    finally:
        lara.close(force=True)


# -- the echo client --------------------------------------------------------------------------



def echo_pipe(port: int, data: bytes) -> subprocess.CompletedProcess:
    """`netlab echo connect` with `data` piped in, to its end."""
    return subprocess.run([sys.executable, "-m", "netlab", "echo", "connect", "--port", str(port)],
                          input=data, capture_output=True, timeout=WAIT)

def test_echo_pipe_streams_bytes_exactly(data_dir):
    server, port = serve("echo", data_dir, "--no-repl")
    try:
        payload = os.urandom(3 << 20)
        proc = echo_pipe(port, payload)
        assert proc.returncode == 0 and proc.stdout == payload
    finally:
        server.kill()


def test_echo_terminal_prints_each_echo(data_dir):
    server, port = serve("echo", data_dir, "--no-repl")
    child = spawn_terminal("echo", "connect", "--port", str(port))
    try:
        child.expect("echo>")
        child.sendline("ping 123")
        child.expect("ping 123\r\n")  # the echo, a line of its own
        child.expect("echo>")
        child.sendeof()
        assert_exits_zero(child)
    finally:
        child.close(force=True)
        server.kill()


@contextlib.contextmanager
def echo_terminal_awaiting_an_echo() -> Iterator[tuple[pexpect.spawn, socket.socket]]:
    """A terminal echo client whose line reached a bare peer that has not answered."""
    with socket.create_server(("127.0.0.1", 0)) as peer:
        child = spawn_terminal("echo", "connect", "--port", str(peer.getsockname()[1]))
        try:
            conn, _ = peer.accept()
            with conn:
                child.expect("echo>")
                child.sendline("hello")
                assert conn.recv(6) == b"hello\n"  # the client now waits in recv
                yield child, conn
        finally:
            child.close(force=True)


def test_echo_terminal_says_so_when_the_connection_is_reset():
    """A reset (a rebooted host, a firewall), not a FIN: a real peer that sends RST."""
    import struct

    with echo_terminal_awaiting_an_echo() as (child, conn):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: RST instead of FIN
        child.expect("the server closed the connection")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 1
        assert "Traceback" not in child.before


def test_echo_terminal_ctrl_c_while_waiting_for_the_echo_exits_zero():
    """A server that takes the line and never answers: Ctrl-C leaves as it does at the prompt."""
    with echo_terminal_awaiting_an_echo() as (child, _):
        child.sendintr()
        assert_exits_zero(child)
        assert "Aborted" not in child.before


def test_echo_pipe_ctrl_c_exits_zero(data_dir):
    server, port = serve("echo", data_dir, "--no-repl")
    proc = subprocess.Popen([sys.executable, "-m", "netlab", "echo", "connect", "--port", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"abc\n")
        proc.stdin.flush()
        assert proc.stdout.read(4) == b"abc\n"  # connected, input still open
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT) == 0
        assert b"Aborted" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.communicate()
        server.kill()


def test_echo_pipe_refused_by_a_full_server_says_so_in_one_line(data_dir):
    server, port = serve("echo", data_dir, "--no-repl", "--max-clients", "1")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as kept:
            kept.sendall(b"x")
            assert kept.recv(1) == b"x"  # served: the next connection is over the limit
            proc = echo_pipe(port, os.urandom(3 << 20))
        assert proc.returncode == 1
        [line] = proc.stderr.decode().splitlines()  # one line, no traceback
        assert re.fullmatch(r"netlab: the server closed the connection: 0 of \d+ bytes sent came back", line)
    finally:
        server.kill()


def test_echo_pipe_pointed_at_the_chat_port_says_it_is_no_echo(data_dir):
    server, port = serve("chat", data_dir, "--no-repl")
    try:
        proc = echo_pipe(port, b"hi\n")  # the chat's welcome comes back, not "hi"
        assert proc.returncode == 1
        [line] = proc.stderr.decode().splitlines()
        assert re.fullmatch(r"netlab: the server sent \d+ bytes for the 3 sent: is it an echo server\?", line)
    finally:
        server.kill()


def test_echo_pipe_ends_when_the_server_goes_though_input_goes_on(data_dir):
    server, port = serve("echo", data_dir, "--no-repl")
    proc = Netlab("echo", "connect", "--port", str(port))
    try:
        proc.command("still typing")
        proc.out.wait_for("^still typing$")
        server.kill()  # stdin stays open: the client must not wait for its end
        assert proc.wait() == 1
        proc.err.wait_for("the server closed the connection: 13 of 13 bytes sent came back")
    finally:
        proc.kill()
        server.kill()


def test_echo_unreachable_server_fails_with_status_one_like_the_chat_client(data_dir):
    server, port = serve("echo", data_dir, "--no-repl")
    server.kill()
    proc = echo_pipe(port, b"x\n")
    assert proc.returncode == 1  # 2 is a bad option
    assert proc.stderr.decode().splitlines() == [f"netlab: cannot reach 127.0.0.1:{port}: Connection refused"]


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_pipe_whose_reader_goes_away_leaves_quietly(chat, mode):
    """`netlab chat connect ... | head -1`: once the reader is gone, the client quits
    the session and exits 0 without an error (as the prompt's Ctrl-D does)."""
    _, port = chat
    assert pipe_client(port, "writer", ["one"], "--register")[0] == 0
    reader = subprocess.Popen(
        [sys.executable, "-m", "netlab", "chat", "connect", "--port", str(port), "--user", "reader",
         "--password-env", "PW", "--register", "--history", "1", *mode],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PW": PASSWORD},
    )
    try:
        while b"one" not in reader.stdout.readline():  # the history, after login
            pass
        reader.stdout.close()  # as `head -1` does
        assert pipe_client(port, "writer", ["two"])[0] == 0  # a line the reader cannot print
        status = reader.wait(WAIT)
        err = reader.stderr.read().decode()
        assert status == 0 and "rror" not in err, err  # no error, no "Exception ignored"
    finally:
        reader.kill()
        reader.wait()


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's socket table")
def test_client_runs_tcp_keepalive_so_a_vanished_server_is_noticed(chat):
    """A server that vanishes without a FIN (a power cut) would leave an idle client
    waiting forever; keepalive probes end that wait and the client reconnects. Linux
    shows a socket's pending keepalive timer as "02" in /proc/net/tcp."""
    _, port = chat
    kim = subprocess.Popen(
        [sys.executable, "-m", "netlab", "chat", "connect", "--port", str(port), "--user", "kim",
         "--password-env", "PW", "--register"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PW": PASSWORD},
    )
    try:
        while b"logged in as kim" not in kim.stderr.readline():
            pass
        wait_until(lambda: client_timers(port) == ["02"])  # settled: nothing left to retransmit
    finally:
        kim.kill()
        kim.wait()


def client_timers(server_port: int) -> list[str]:
    """The timer column of every established connection to `server_port` (client sides)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return [row[5].split(":")[0] for row in rows
            if row[3] == "01" and int(row[2].split(":")[1], 16) == server_port]
