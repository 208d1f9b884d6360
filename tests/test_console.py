"""The operator console, through a pipe and through a pseudo-terminal."""

from __future__ import annotations

import ctypes
import io
import os
import re
import signal
import socket
import sys

import pexpect
import pytest
from chatclient import connect
from logtags import TAG, tag_in_file
from procs import WAIT, Netlab, assert_exits_zero, serve, spawn_terminal, wait_file_contains


@pytest.fixture
def echo(data_dir):
    server, port = serve("echo", data_dir)
    yield server, port
    server.kill()


def echoes(port: int, data: bytes = b"x") -> bool:
    """Does the echo server still answer?"""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        return sock.recv(len(data)) == data


def touch_server(port: int) -> int:
    """Open and close one connection; returns its local port, which the log names."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        return sock.getsockname()[1]


# -- through a pipe ------------------------------------------------------------


def test_help_lists_every_command(echo):
    server, _ = echo
    server.command("help")
    for command in ["help", "status", "shutdown", "clear log", "clear file", "stop log",
                    "start log", "users", "kick NAME", "say TEXT"]:
        server.out.wait_for(rf"^  {command}\s")


def test_status_reports_counters(echo):
    server, port = echo
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"12345")
        assert sock.recv(5) == b"12345"
        server.command("status")
        server.out.wait_for(r"^uptime: \d+ s")
        server.out.wait_for(r"^connections: 1 open, 1 total")
        server.out.wait_for(r"^bytes: 5 in, 5 out")


@pytest.mark.parametrize("line", ["frobnicate", "clear", "stop", "clear everything", "status now"])
def test_unknown_or_bad_command_prints_one_line(echo, line):
    server, _ = echo
    server.command(line)
    server.command("status")  # a marker: its answer comes after the error line
    _, marker = server.out.wait_for(r"^server: echo")
    errors = [text for text in server.out.lines[1:marker] if text]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "help" in errors[0]


@pytest.mark.parametrize("line", ["users", "kick bob", "say hello", "clear file", "kick", "say"])
def test_chat_only_commands_say_so_on_echo(echo, line):
    server, _ = echo
    server.command(line)
    server.out.wait_for(rf"'{line.split()[0]}.*' is chat-only: this is the echo server")


def test_stop_log_silences_console_while_file_grows(echo, data_dir):
    server, port = echo
    log_file = data_dir / "echo.log"
    server.command("stop log")
    server.out.wait_for("console logging stopped")
    before = len(log_file.read_text().splitlines())
    hidden = touch_server(port)
    tag = tag_in_file(log_file, hidden)  # 127.0.0.1's in this run
    wait_file_contains(log_file, f"disconnected {tag}:{hidden} ")
    meanwhile = len(log_file.read_text().splitlines()) - before
    server.command("start log")
    server.out.wait_for(f"console logging started; {meanwhile} lines were hidden "
                        r"\(the log file has them\)")
    shown = touch_server(port)
    server.err.wait_for(f"disconnected {tag}:{shown} ")
    assert f":{hidden} " not in server.err.text()  # stderr is ordered: it would be there by now


def test_clear_log_empties_file_and_next_line_starts_it(echo, data_dir):
    server, port = echo
    log_file = data_dir / "echo.log"
    tag = tag_in_file(log_file, touch_server(port))  # 127.0.0.1's in this run
    wait_file_contains(log_file, "disconnected")
    server.command("clear log")
    server.out.wait_for("log cleared")
    later = touch_server(port)
    text = wait_file_contains(log_file, f"disconnected {tag}:{later} ")
    assert "listening on" not in text
    assert "\0" not in text  # no hole
    assert_cleared_by_the_operator(text)


def assert_cleared_by_the_operator(log_text: str) -> None:
    """The file's first line says it was cleared, when, in the log's own line format."""
    first = log_text.splitlines()[0]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(stamp + " INFO log cleared by the operator", first), first


def test_end_of_input_leaves_server_running(echo):
    server, port = echo
    server.proc.stdin.close()
    assert echoes(port, b"still here")
    assert server.proc.poll() is None
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_stdin_closed_from_the_start_is_end_of_input(data_dir):
    server = Netlab("echo", "serve", "--port", "0", "--data-dir", str(data_dir), stdin=False)
    try:
        port = server.listening_port()
        assert echoes(port)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "Traceback" not in server.err.text()
    finally:
        server.kill()


def test_no_repl_reads_nothing(data_dir):
    server, port = serve("echo", data_dir, "--no-repl")
    try:
        server.command("shutdown")
        server.proc.stdin.close()
        assert echoes(port)
        assert server.proc.poll() is None
        server.signal(signal.SIGINT)
        assert server.wait() == 0
        assert "shutting down" not in server.out.text()
    finally:
        server.kill()


def test_signal_stops_server_blocked_reading_a_pipe(echo):
    server, _ = echo  # the console thread sits in read(); the signal still stops it
    server.signal(signal.SIGINT)
    assert server.wait() == 0
    server.err.wait_for("stopping: signal SIGINT")


def thread_ids(pid: int) -> set[int]:
    return {int(tid) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.parametrize("kind, target", [("echo", "main"), ("echo", "client"), ("chat", "main")])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_sent_to_one_thread_stops_the_server(data_dir, kind, target, signum):
    # CLI.md: "whichever thread the kernel delivers the signal to"; tgkill picks the thread.
    server, port = serve(kind, data_dir)
    try:
        before = thread_ids(server.proc.pid)
        if kind == "chat":
            client = connect(port)
        else:
            client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            client.sendall(b"x")
            assert client.recv(1) == b"x"  # served: its thread is running
        new = thread_ids(server.proc.pid) - before
        tid = server.proc.pid if target == "main" else max(new)
        assert ctypes.CDLL(None, use_errno=True).tgkill(server.proc.pid, tid, signum) == 0
        assert server.wait() == 0
        server.err.wait_for(f"stopping: signal {signal.Signals(signum).name}")
        if kind == "chat":
            assert [f["type"] for f in client.frames_until_closed()] == ["shutdown"]
        else:
            assert client.recv(1) == b""
        client.close()
    finally:
        server.kill()


# -- through a pseudo-terminal ---------------------------------------------------


def echo_on_terminal(data_dir) -> tuple[pexpect.spawn, int]:
    child = spawn_terminal("echo", "serve", "--port", "0", "--data-dir", str(data_dir))
    child.expect(r"listening on 127\.0\.0\.1:(\d+)")
    port = int(child.match.group(1))
    child.expect("netlab echo>")
    return child, port


@pytest.fixture
def terminal(data_dir):
    child, port = echo_on_terminal(data_dir)
    yield child, port
    child.close(force=True)


def test_terminal_prompt_status_and_completion(terminal):
    child, _ = terminal
    child.send("stat")
    child.expect("stat")
    child.send("\t")  # the only completion: Tab writes the rest
    child.expect("us")
    child.send("\r")
    child.expect(r"connections: 0 open")
    child.expect("netlab echo>")


def test_terminal_log_lines_appear_and_stop_log_hides_them(terminal, data_dir):
    child, port = terminal
    shown = touch_server(port)
    child.expect(f"disconnected ({TAG}):{shown}")
    tag = child.match.group(1)  # 127.0.0.1's in this run
    child.sendline("stop log")
    child.expect("console logging stopped")
    hidden = touch_server(port)
    wait_file_contains(data_dir / "echo.log", f"disconnected {tag}:{hidden} ")
    child.sendline("start log")
    child.expect("console logging started")
    again = touch_server(port)
    child.expect(f"disconnected {tag}:{again}")
    assert f"{tag}:{hidden}" not in child.before


def test_terminal_clear_log_empties_file_and_clears_the_screen(terminal, data_dir):
    child, port = terminal
    child.sendline("clear log")
    child.expect("log cleared")
    assert "\x1b[2J" in child.before  # CLI.md: "and clear the console"
    cleared = (data_dir / "echo.log").read_text()
    assert_cleared_by_the_operator(cleared)
    assert len(cleared.splitlines()) == 1  # nothing else happened since


def test_terminal_ctrl_d_shuts_down(terminal):
    child, _ = terminal
    child.sendeof()
    assert_exits_zero(child)


def test_terminal_ctrl_c_clears_line_then_second_stops(terminal):
    child, port = terminal
    child.send("half-typed")
    child.sendintr()
    child.expect("Ctrl-C again")
    with socket.create_connection(("127.0.0.1", port)) as sock:  # still serving
        sock.sendall(b"y")
        assert sock.recv(1) == b"y"
    child.sendintr()
    assert_exits_zero(child)


def test_terminal_sigterm_stops_server_blocked_in_prompt(terminal):
    child, _ = terminal
    child.kill(signal.SIGTERM)
    assert_exits_zero(child)


def test_terminal_shutdown_command(terminal):
    child, _ = terminal
    child.sendline("shutdown")
    assert_exits_zero(child)


def test_python_dash_m_and_console_script_agree():
    import subprocess
    from pathlib import Path

    script = Path(sys.executable).parent / "netlab"  # installed by pyproject's [project.scripts]
    by_module = subprocess.run([sys.executable, "-m", "netlab", "--help"], capture_output=True, text=True)
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert by_module.returncode == by_script.returncode == 0
    assert by_module.stdout == by_script.stdout  # the usage line names netlab, too
    for command in ("chat", "echo", "bench", "tls"):
        assert command in by_module.stdout
    for runner in ([sys.executable, "-m", "netlab"], [str(script)]):  # the same name either way
        version = subprocess.run([*runner, "--version"], capture_output=True, text=True)
        assert version.stdout.startswith("netlab, version ")


@pytest.mark.parametrize("key", ["d", "c"])
def test_terminal_ctrl_d_or_ctrl_c_at_a_question_is_no(data_dir, key):
    child = spawn_terminal("chat", "serve", "--port", "0", "--data-dir", str(data_dir))
    try:
        child.expect("netlab chat>")
        accounts = (data_dir / "clients.csv").read_bytes()
        child.sendline("clear file")
        child.expect(r"\[y/N\]")
        child.sendcontrol(key)
        child.expect("clear file cancelled: nothing changed")
        assert "error" not in child.before
        child.expect("netlab chat>")  # the server runs on
        assert (data_dir / "clients.csv").read_bytes() == accounts
        assert not (data_dir / "clients.csv.bak").exists()
        child.sendeof()
        assert_exits_zero(child)
    finally:
        child.close(force=True)


def test_a_terminal_that_never_answers_cursor_position_requests(data_dir):
    # pexpect's pseudo-terminal answers no CPR, as serial consoles and multiplexers may not:
    # prompt_toolkit asked one, held each command's answer for it, and 2 s later printed a
    # warning. The console asks none, so a command typed at once is answered, and no warning.
    child = spawn_terminal("echo", "serve", "--port", "0", "--data-dir", str(data_dir))
    child.logfile_read = io.StringIO()
    try:
        child.expect(r"listening on 127\.0\.0\.1:\d+")
        child.sendline("status")
        child.expect(r"connections: 0 open")
        child.sendline("shutdown")
        assert_exits_zero(child)
        shown = child.logfile_read.getvalue()
        assert "\x1b[6n" not in shown  # the request whose missing answer made the wait
        assert "WARNING" not in shown and "CPR" not in shown
    finally:
        child.close(force=True)
