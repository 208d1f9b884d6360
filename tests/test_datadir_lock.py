"""One server per data directory: a second one is refused and touches nothing."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from chatclient import logged_in, registered
from procs import Netlab, wait_file_contains


def file_bytes(data: Path) -> dict[str, bytes]:
    """Every file in the directory with its bytes (the lock file included)."""
    return {path.name: path.read_bytes() for path in sorted(data.iterdir()) if path.is_file()}


def refused(kind: str, data: Path) -> str:
    """`netlab KIND serve` on `data` that must stop at start: exit 2, one line on stderr."""
    second = Netlab(kind, "serve", "--port", "0", "--no-repl", "--data-dir", str(data))
    assert second.wait() == 2
    lines = second.err.wait_closed()
    second.kill()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def test_a_second_chat_server_on_a_directory_is_refused_and_touches_nothing(start_chat, data_dir):
    first, port = start_chat(data=data_dir)
    with registered(port, "carol") as client:
        client.say("before the second server")
    wait_file_contains(data_dir / "chat.log", "disconnected 'carol'")  # the first one's last word
    before = file_bytes(data_dir)
    line = refused("chat", data_dir)
    assert re.fullmatch(
        rf"netlab: data directory {re.escape(str(data_dir))} is in use by another chat server "
        rf"\(pid {first.proc.pid}\)", line), line
    assert file_bytes(data_dir) == before  # no record, no account, no log line, no new key
    assert stat.S_IMODE((data_dir / "chat.lock").stat().st_mode) == 0o600


def test_the_lock_goes_with_a_server_killed_hard(start_chat, data_dir):
    first, port = start_chat(data=data_dir)
    with registered(port, "carol") as client:
        client.say("kept")
    first.kill()  # SIGKILL: nothing of the server's runs, the kernel drops the lock
    _, port = start_chat(data=data_dir)
    with logged_in(port, "carol") as client:
        assert [m["text"] for m in client.history()["messages"]] == ["kept"]


def test_a_second_echo_server_is_refused_but_a_chat_server_shares_the_directory(start_chat, data_dir):
    echo = Netlab("echo", "serve", "--port", "0", "--no-repl", "--data-dir", str(data_dir))
    try:
        echo.listening_port()
        wait_file_contains(data_dir / "echo.log", "listening on")
        log_before = (data_dir / "echo.log").read_bytes()
        line = refused("echo", data_dir)
        assert f"is in use by another echo server (pid {echo.proc.pid})" in line
        assert (data_dir / "echo.log").read_bytes() == log_before
        _, port = start_chat(data=data_dir)  # different files, different lock
        with registered(port, "dave"):
            pass
    finally:
        echo.kill()
