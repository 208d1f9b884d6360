"""`netlab chat console`: the operator console of a running server (`--no-repl`, as under
systemd) through its console.sock, with real server and console processes."""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import pytest
from chatclient import registered
from procs import Netlab, assert_exits_zero, spawn_terminal

from netlab.console_socket import CONSOLE_SOCKET


def console(data_dir: Path, *lines: str) -> tuple[int, list[str], list[str]]:
    """Pipe `lines` to `netlab chat console`; its exit status, stdout and stderr lines."""
    client = Netlab("chat", "console", "--data-dir", str(data_dir))
    for line in lines:
        client.command(line)
    client.proc.stdin.close()
    status = client.wait()
    return status, client.out.wait_closed(), client.err.wait_closed()


def test_a_ban_through_the_socket_ends_the_session_and_answers_there_only(start_chat, data_dir):
    server, port = start_chat("--rate-limit", "0")
    bob = registered(port, "bob")
    bob.ignore = {"join", "leave"}
    status, out, err = console(data_dir, "ban bob 1h spam", "foo", "status")
    assert status == 0 and err == []
    assert out[0] == "banned bob for 3600 s: 1 session(s) ended"
    assert out[1] == "error: No such command 'foo'. (type 'help' for the commands)"
    assert "moderation: 1 ban(s), 0 mute(s) in force" in out and out[-1].startswith("broadcast log: ")
    assert bob.expect_fatal("banned")["message"].endswith(": spam")
    assert not any("banned bob" in line for line in server.out.lines)  # the server's own stdout


def test_a_question_is_answered_by_the_next_line(start_chat, data_dir):
    _, port = start_chat("--rate-limit", "0")
    registered(port, "cy").close()
    registered(port, "dee").close()
    _, out, _ = console(data_dir, "remove cy", "n", "remove dee", "y")
    assert out == ["Remove the account cy? [y/N]", "remove cancelled: nothing changed",
                   "Remove the account dee? [y/N]",
                   "removed dee: 0 session(s) ended; the name is free, its messages stay"]


def test_the_socket_is_0600_shutdown_works_and_then_no_server_is_one_line(start_chat, data_dir):
    server, _ = start_chat()
    path = data_dir / CONSOLE_SOCKET
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert console(data_dir, "shutdown") == (0, ["shutting down"], [])
    assert server.wait() == 0
    assert not path.exists()
    status, out, err = console(data_dir, "status")
    assert status == 2 and out == []
    assert err == [f"netlab: no server is listening on {path} (No such file or directory)"]


def test_a_stale_socket_after_kill_9_is_replaced_at_the_next_start(start_chat, data_dir):
    server, _ = start_chat()
    server.signal(signal.SIGKILL)
    server.wait()
    assert (data_dir / CONSOLE_SOCKET).exists()
    status, _, err = console(data_dir, "status")
    assert status == 2 and "Connection refused" in err[0]
    start_chat()
    status, out, _ = console(data_dir, "status")
    assert status == 0 and out[0].startswith("server: chat on 127.0.0.1:")


def test_on_a_terminal_it_prompts_and_ends_when_the_server_does(start_chat, data_dir):
    server, port = start_chat("--rate-limit", "0")
    registered(port, "eve").close()
    child = spawn_terminal("chat", "console", "--data-dir", str(data_dir))
    try:
        child.expect("netlab chat>")
        child.sendline("remove eve")
        child.expect(r"Remove the account eve\? \[y/N\]")
        child.sendline("y")
        child.expect("removed eve: 0 session")
        child.sendline("shutdown")
        child.expect("shutting down")
        assert_exits_zero(child)
        assert server.wait() == 0
    finally:
        child.close(force=True)


def test_ctrl_d_on_a_terminal_leaves_the_server_running(start_chat, data_dir):
    start_chat()
    child = spawn_terminal("chat", "console", "--data-dir", str(data_dir))
    try:
        child.expect("netlab chat>")
        child.sendcontrol("d")
        assert_exits_zero(child)
    finally:
        child.close(force=True)
    assert console(data_dir, "status")[0] == 0


def test_a_console_left_open_holds_no_script_up_and_one_past_the_bound_is_told_busy(
        start_chat, data_dir):
    start_chat("--max-consoles", "3")
    path = str(data_dir / CONSOLE_SOCKET)
    held = []
    try:
        for _ in range(3 - 1):
            held.append(socket.socket(socket.AF_UNIX))
            held[-1].connect(path)
        assert console(data_dir, "status")[0] == 0
        held.append(socket.socket(socket.AF_UNIX))
        held[-1].connect(path)
        held[-1].sendall(b"bans\n")
        assert held[-1].makefile().readline() == "0 ban(s) in force\n"  # all three are seated
        with socket.socket(socket.AF_UNIX) as fourth:
            fourth.connect(path)
            assert fourth.makefile().read() == "busy: 3 consoles are open already\n"
    finally:
        for conn in held:
            conn.close()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to be another user")
def test_another_user_is_refused_even_where_the_file_mode_would_let_it_in(start_chat, data_dir):
    """SO_PEERCRED: with the directory and socket opened up by hand, a process of another
    uid gets one line and no command is run."""
    start_chat()
    path = data_dir / CONSOLE_SOCKET
    data_dir.chmod(0o755)
    path.chmod(0o666)
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child only connects as nobody and reports what it read
        try:
            os.chdir(data_dir)  # pytest's 0700 directories above it stay shut to nobody
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(CONSOLE_SOCKET)
                conn.sendall(b"shutdown\n")
                os.write(writing, conn.makefile("rb").read())
        except OSError as exc:
            os.write(writing, repr(exc).encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading, "rb") as answer:
        assert answer.read() == b"refused: only the server's user or root may use its console\n"
    os.waitpid(child, 0)
    assert console(data_dir, "bans") == (0, ["0 ban(s) in force"], [])  # still running


def test_beside_the_servers_own_prompt_each_console_gets_its_own_answers(data_dir):
    """The server's terminal console (prompt_toolkit's patch_stdout) and a socket console."""
    child = spawn_terminal("chat", "serve", "--port", "0", "--data-dir", str(data_dir))
    try:
        child.expect("netlab chat>")
        _, out, _ = console(data_dir, "bans")
        assert out == ["0 ban(s) in force"]
        child.sendline("rooms")
        child.expect(r"1 room\(s\)")
        assert "ban(s) in force" not in child.before
        assert console(data_dir, "status")[1][0].startswith("server: chat on ")
        child.sendline("shutdown")
        assert_exits_zero(child)
    finally:
        child.close(force=True)


def test_a_data_directory_deep_in_the_tree_still_gets_its_console(start_chat, tmp_path):
    """A Unix socket's address holds 107 bytes of path; this data directory's is longer."""
    deep = tmp_path / ("a-long-directory-name-" * 6) / "data"
    assert len(str(deep / CONSOLE_SOCKET)) > 108
    start_chat(data=deep)
    status, out, _ = console(deep, "bans")
    assert (status, out) == (0, ["0 ban(s) in force"])
