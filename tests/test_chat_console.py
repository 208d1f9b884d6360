"""The chat's operator console, one command a line through a pipe."""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import pytest
from chatclient import PASSWORD, connect, logged_in, registered
from logtags import TAG, tag_of
from procs import LineLog, Netlab, assert_idles, wait_file_contains, wait_until

from netlab.logs import CONSOLE_BACKLOG
from netlab.wire import encode


def marked(server: Netlab, command: str, pattern: str) -> re.Match:
    """Run a console command and wait for its answer (lines before it are not looked at).

    A `status` answer is waited for to its last line, so that no line of it can arrive
    after the next command's start and be taken for that command's answer.
    """
    start = len(server.out)
    server.command(command)
    match, index = server.out.wait_for(pattern, start=start)
    if command == "status":
        server.out.wait_for(r"^broadcast log: ", start=index)
    return match


@pytest.fixture
def console(start_chat):
    return start_chat("--rate-limit", "0", repl=True)


def test_users_lists_names_sessions_and_addresses(console):
    server, port = console
    walt = registered(port, "Walt")
    phone = logged_in(port, "WALT")
    xena = registered(port, "xena")
    connect(port).close()  # unauthenticated connections are not users
    walt.ignore = phone.ignore = {"join"}
    start = len(server.out)
    server.command("users")
    server.out.wait_for(r"^2 user\(s\) online$", start=start)
    lines = server.out.lines[start:]
    walt_line = next(line for line in lines if line.startswith("Walt "))
    assert "sessions=2" in walt_line
    for client in (walt, phone):
        assert f"127.0.0.1:{client.local_port}" in walt_line
    xena_line = next(line for line in lines if line.startswith("xena "))
    assert "sessions=1" in xena_line and f"127.0.0.1:{xena.local_port}" in xena_line
    assert lines.index(walt_line) < lines.index(xena_line)
    for client in (walt, phone, xena):
        client.close()


def test_kick_is_case_insensitive_and_the_others_see_leave(console):
    server, port = console
    watcher = registered(port, "Guard")
    target = registered(port, "Intruder")
    second = logged_in(port, "intruder")
    watcher.expect("join", username="Intruder")
    marked(server, "kick iNtRuDeR", r"kicked iNtRuDeR: 2 session")
    for client in (target, second):
        frames = client.frames_until_closed()
        assert [f["type"] for f in frames] == ["kicked"], frames
        assert isinstance(frames[-1]["reason"], str)
    assert watcher.expect("leave") == {"type": "leave", "username": "Intruder"}
    assert watcher.sync() == []  # one leave for the user, not one per session
    watcher.send("users")
    assert watcher.expect("users")["online"] == ["Guard"]
    marked(server, "kick nobody", r"nobody is not online")
    with logged_in(port, "Intruder"):  # kicked, not banned
        pass
    watcher.close()


def test_say_sends_a_notice_to_every_authenticated_session(console):
    server, port = console
    one = registered(port, "Nora")
    two = registered(port, "Otto")
    one.expect("join", username="Otto")
    stranger = connect(port)
    marked(server, "say Maintenance at 10:00, sorry", r"notice sent to 2 session")
    for client in (one, two):
        assert client.expect("notice") == {"type": "notice", "text": "Maintenance at 10:00, sorry"}
    assert stranger.sync() == []  # not authenticated: no notice
    for client in (one, two, stranger):
        client.close()


def test_say_is_logged(console, tmp_path):
    server, port = console
    with registered(port, "Nell") as listener:
        marked(server, "say back in 5 minutes", r"notice sent to 1 session")
        listener.expect("notice")
    wait_file_contains(tmp_path / "data" / "chat.log",
                       "INFO operator notice to 1 session(s): 'back in 5 minutes'")


def test_refused_registrations_are_logged_with_code_and_address_not_name(console, tmp_path):
    server, port = console
    registered(port, "Taken").close()
    attempts = [("TAKEN", PASSWORD, "username_taken"),
                ("no such name!", PASSWORD, "invalid_username"),
                ("Secret-Word-42", "short", "invalid_password")]  # a password in the name field
    log_file = tmp_path / "data" / "chat.log"
    tag = tag_of(tmp_path / "data", "127.0.0.1")  # the log names an address by its tag only
    for username, password, code in attempts:
        with connect(port) as client:
            client.send("register", username=username, password=password)
            client.expect_error(code)
            refused = f"INFO registration refused for {tag}:{client.local_port}: {code}"
            wait_file_contains(log_file, refused)
    text = log_file.read_text()
    for username, _, _ in attempts:
        assert username not in text  # "Taken" is there, as the account it is; never a name tried


def test_kick_and_say_take_a_name_or_text_as_typed(console):
    server, port = console
    watcher = registered(port, "Watcher")
    dash = registered(port, "-Dash")  # '-' is a username character
    watcher.expect("join", username="-Dash")
    marked(server, "kick -dash  --watch -it", r"kicked -dash: 1 session")  # CLI.md: kick NAME [REASON]
    assert dash.frames_until_closed() == [{"type": "kicked", "reason": "--watch -it"}]
    watcher.expect("leave", username="-Dash")
    text = "-1 degrees,   so  --wrap up\twarm"
    marked(server, f"say {text}  ", r"notice sent to 1 session")
    assert watcher.expect("notice") == {"type": "notice", "text": text}
    # a notice the protocol could not carry as a message is refused, and nobody gets it
    marked(server, "say " + "x" * 4001, r"^error: a notice is 1 to 4000 characters")
    marked(server, "kick", r"^error: .*NAME")
    assert watcher.sync() == []
    watcher.close()


def test_status_counts_messages(console):
    server, port = console
    pattern = r"^messages: (\d+) received, (\d+) delivered, last seq (\d+)"
    before = marked(server, "status", pattern)
    assert before.groups() == ("0", "0", "0")
    a = registered(port, "Stat1")
    b = registered(port, "Stat2")
    a.expect("join")
    a.say("one")
    last = a.say("two")
    b.expect("message")
    b.expect("message")
    after = marked(server, "status", pattern)
    assert after.groups() == ("2", "4", str(last["seq"]))
    bytes_pattern = r"^bytes: (\d+) in, (\d+) out"
    in_before, out_before = map(int, marked(server, "status", bytes_pattern).groups())
    a.say("x" * 1000)
    b.expect("message")
    in_after, out_after = map(int, marked(server, "status", bytes_pattern).groups())
    assert in_after - in_before > 1000 and out_after - out_before > 2 * 1000  # to both sessions
    start = len(server.out)
    server.command("status")
    server.out.wait_for(r"^uptime: \d+", start=start)
    server.out.wait_for(r"^connections: 2 open, 2 total", start=start)
    a.close()
    b.close()


@pytest.mark.parametrize("answer", ["--yes", "yes", "y"])
def test_clear_file_empties_clients_and_keeps_a_backup(console, answer):
    server, port = console
    data = server_data(server)
    with registered(port, "Doomed"):
        pass
    old = (data / "clients.csv").read_bytes()
    if answer == "--yes":
        marked(server, "clear file --yes", r"clients\.csv emptied: 1 account")
    else:
        server.command("clear file")
        marked(server, answer, r"clients\.csv emptied: 1 account")
    assert (data / "clients.csv.bak").read_bytes() == old
    assert (data / "clients.csv").read_bytes().count(b"\n") == 1  # the header alone
    assert old.startswith((data / "clients.csv").read_bytes())
    with connect(port) as client:
        client.send("login", username="Doomed", password="correct horse battery")
        client.expect_error("bad_credentials")
        client.register("Doomed", "a new password")  # the name is free again


def test_clear_file_ends_the_removed_accounts_sessions_and_frees_their_names(console):
    # Else the old owner stayed online under a name someone else could now register.
    server, port = console
    alice = registered(port, "alice")
    phone = logged_in(port, "Alice")
    anonymous = connect(port)  # no account: nothing to end
    marked(server, "clear file --yes", r"clients\.csv emptied: 1 account\(s\) removed, 2 session\(s\) ended")
    for session in (alice, phone):
        session.ignore = {"join"}
        assert session.frames_until_closed() == [{"type": "kicked", "reason": "account removed"}]
        session.close()
    server.err.wait_for(rf"disconnected 'alice' from {TAG}:\d+ \(account removed\)")
    with registered(port, "alice") as bob:  # the name is free, and its old owner's sessions gone
        marked(server, "users", rf"^alice .*sessions=1 .*127\.0\.0\.1:{bob.local_port}")
    anonymous.send("ping", id="still")
    anonymous.expect("pong", id="still")
    anonymous.close()


def test_clear_file_with_no_accounts_keeps_the_backup(console):
    server, port = console
    data = server_data(server)
    with registered(port, "Precious"):
        pass
    old = (data / "clients.csv").read_bytes()
    marked(server, "clear file --yes", r"clients\.csv emptied: 1 account")
    emptied = (data / "clients.csv").read_bytes()
    marked(server, "clear file --yes", r"^clients\.csv holds no accounts: nothing changed")
    assert (data / "clients.csv.bak").read_bytes() == old  # not replaced by the empty file
    assert (data / "clients.csv").read_bytes() == emptied


def test_clear_file_answered_no_changes_nothing(console):
    server, port = console
    data = server_data(server)
    with registered(port, "Survivor"):
        pass
    old = (data / "clients.csv").read_bytes()
    marked(server, "clear file", r"^Remove every account from clients\.csv\? \[y/N\]$")
    marked(server, "no", r"cancelled")
    assert (data / "clients.csv").read_bytes() == old
    assert not (data / "clients.csv.bak").exists()
    with logged_in(port, "survivor") as client:
        assert client.username == "Survivor"


def test_console_shutdown_sends_shutdown_and_exits_0(console):
    server, port = console
    authed = registered(port, "Last")
    idle = connect(port)
    server.command("shutdown")
    for client in (authed, idle):
        frames = client.frames_until_closed()
        client.close()
        assert [f["type"] for f in frames] == ["shutdown"], frames
    assert server.wait() == 0


@pytest.mark.alone  # the loop idles: a second of CPU time measured
def test_a_peer_that_never_closes_is_dropped_after_the_grace_and_the_loop_idles(console):
    # design.md: a closing connection is read until the peer closes or 2 s pass.
    server, port = console
    lingerer = registered(port, "Lingerer")
    lingerer.send("quit")
    assert lingerer.frames_until_closed() == [{"type": "bye"}]  # and it keeps its end open
    # Dropped, not held for good; each look asks the console for its status.
    wait_until(lambda: marked(server, "status", r"^connections: (\d+) open").group(1) == "0",
               interval=0.05)
    assert_idles(server.proc.pid)  # a dropped connection leaves no deadline behind
    lingerer.close()


def test_status_shows_the_broadcast_log_trimmed_once_every_reader_has_it(start_chat):
    # design.md's bounds: the shared log is trimmed to the slowest reader past
    # min(1 MiB, --max-output); readers that keep up leave it short.
    server, port = start_chat("--rate-limit", "0", "--max-output", "65536", repl=True)
    one = registered(port, "Trim1")
    two = registered(port, "Trim2")
    one.expect("join", username="Trim2")
    text = "\u65e5" * 4000
    for _ in range(40):  # 480 kB through the log
        one.say(text)
        two.expect("message")
    match = marked(server, "status", r"^broadcast log: (\d+) bytes buffered")
    assert int(match.group(1)) < 2 * 65536
    one.close()
    two.close()


def test_end_of_console_input_leaves_the_server_running(console):
    server, port = console
    server.proc.stdin.close()
    with registered(port, "AfterEOF") as client:
        client.send("ping", id="up")
        client.expect("pong", id="up")


def server_data(server: Netlab) -> Path:
    args = server.proc.args
    return Path(args[args.index("--data-dir") + 1])


def test_a_console_that_fell_behind_is_told_how_many_lines_it_missed(tmp_path: Path):
    # design.md's bounds: past CONSOLE_BACKLOG lines waiting for a slow stderr, lines are
    # dropped from the console only and counted; the count is printed once it catches up.
    server = Netlab("chat", "serve", "--port", "0", "--no-repl", "--data-dir", str(tmp_path),
                    read_stderr=False)  # nobody reads stderr until the end
    try:
        port = server.listening_port()
        lines = CONSOLE_BACKLOG + 2000
        with connect(port) as client:
            for _ in range(5):  # five failures: this name's logins are refused from now on
                client.send("login", username="ghost", password="wrong guess")
                client.expect_error("bad_credentials")
            attempt = encode({"type": "login", "username": "ghost", "password": "wrong guess"})
            for _ in range(lines // 1000):  # each refusal is a log line
                client.send_raw(attempt * 1000)
                for _ in range(1000):
                    client.expect_error("rate_limited")
        console = LineLog(server.proc.stderr)  # the operator looks at last
        match, _ = console.wait_for(r"^\((\d+) log lines not shown: the console fell behind; "
                                    r"the log file has them\)$")
        shown = sum("login throttled" in line for line in console.lines)
        assert shown + int(match.group(1)) >= lines  # all accounted for
        assert shown < lines  # the console's backlog is bounded
        log_text = (tmp_path / "chat.log").read_text()
        assert log_text.count(" INFO login throttled for a name that is no account") == lines
    finally:
        server.kill()


@pytest.mark.alone  # 2 s, after 2,000 connections
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered-stderr", "PYTHONUNBUFFERED"])
def test_a_console_nobody_reads_never_stops_the_chat(tmp_path: Path, unbuffered: bool):
    # stderr is a pipe this test never reads: once its 64 KiB fill up, a
    # write there blocks. The chat must go on, the log file miss nothing, and
    # a stop still end the process (Python's own stderr buffer is involved
    # unless PYTHONUNBUFFERED is set).
    # Closed faster than the server sees them go, the visits may outnumber the default
    # --max-clients-per-ip for a moment: all of them come from this one host.
    server = Netlab("chat", "serve", "--port", "0", "--no-repl", "--data-dir", str(tmp_path),
                    "--max-clients-per-ip", "10000",
                    env={"PYTHONUNBUFFERED": "1" if unbuffered else None}, read_stderr=False)
    try:
        port = server.listening_port()
        visits = 2000  # two log lines each, some 240 KiB in all
        for _ in range(visits):
            socket.create_connection(("127.0.0.1", port)).close()
        with registered(port, "alice") as alice:
            assert alice.say("still here")["text"] == "still here"
        log_text = wait_file_contains(tmp_path / "chat.log", "registered 'alice'")
        assert log_text.count(f" INFO connected {tag_of(tmp_path, '127.0.0.1')}:") >= visits
        # Clients that never close make the chat wait its whole grace: CLI.md's 2 s still hold.
        idle = [connect(port) for _ in range(20)]  # each has had its welcome
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert time.monotonic() - started < 2.0
        for client in idle:
            client.close()
    finally:
        server.kill()


def test_a_flood_of_registrations_from_one_address_does_not_queue_other_logins_behind_it(start_chat):
    server, port = start_chat(repl=True)
    registered(port, "Patient").close()
    flood = [connect(port) for _ in range(80)]
    for n, client in enumerate(flood):
        client.send("register", username=f"flood{n}", password=PASSWORD)

    def hashing() -> tuple[int, int]:
        """(registrations and logins in progress, accounts), read at one instant."""
        line = marked(server, "status", r"^logins: (\d+) in progress, (\d+) accounts")
        return int(line.group(1)), int(line.group(2))

    # Every registration of the flood is with the server (hashed or queued) before the login.
    wait_until(lambda: sum(hashing()) == len(flood) + 1)
    patient = connect(port, source="127.0.0.2")
    patient.login("Patient", PASSWORD)
    # The hash pools take turns between addresses: the login went ahead of most of the
    # flood. First come, first served, it would have waited for all of it (0 or 1 left).
    assert hashing()[0] >= 10
    for client in (patient, *flood):
        client.close()
