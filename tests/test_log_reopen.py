"""SIGHUP reopens the log file (CLI.md, version 2): logrotate renames it, `create`s a new one
and signals; every line lands in one of the two files, none lost, and the server runs on."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from logtags import TAG
from procs import WAIT, Netlab, serve, wait_file_contains
from system_tools import require_command

CONTRIB = Path(__file__).parent.parent / "contrib"


def cause_a_line(server: Netlab, port: int) -> str:
    """Connect, wait for the server's `connected` line, close; the line's end, newline
    included (the client's port makes it unique)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        client = sock.getsockname()[1]
        match, _ = server.err.wait_for(rf" INFO connected ({TAG}:{client})$")
    return f" INFO connected {match[1]}\n"


@pytest.mark.parametrize("kind", ["chat", "echo"])
def test_sighup_reopens_the_log_at_its_path_losing_no_line(tmp_path, kind):
    log = tmp_path / "logs" / f"{kind}.log"
    rotated = log.with_name(f"{kind}.log-rotated")
    server, port = serve(kind, tmp_path / "data", "--no-repl", "--log-file", str(log))
    try:
        before = cause_a_line(server, port)
        wait_file_contains(log, before)
        log.rename(rotated)
        between = cause_a_line(server, port)  # renamed, not yet signalled: the old file
        wait_file_contains(rotated, between)
        server.signal(signal.SIGHUP)
        wait_file_contains(log, "log file reopened (SIGHUP)")
        after = cause_a_line(server, port)
        new_text = wait_file_contains(log, after)
        old_text = rotated.read_text(encoding="utf-8")
        assert before in old_text and between in old_text and after not in old_text
        assert before not in new_text and between not in new_text
        assert log.stat().st_mode & 0o777 == 0o600
        server.signal(signal.SIGTERM)  # still running, and stops as ever
        assert server.wait() == 0
    finally:
        server.kill()


def test_a_path_that_cannot_be_reopened_keeps_the_old_file(tmp_path):
    log = tmp_path / "chat.log"
    rotated = tmp_path / "chat.log-rotated"
    server, port = serve("chat", tmp_path / "data", "--no-repl", "--log-file", str(log))
    try:
        log.rename(rotated)
        log.mkdir()  # no file can be opened there
        server.signal(signal.SIGHUP)
        wait_file_contains(rotated, "cannot reopen the log file")
        after = cause_a_line(server, port)
        wait_file_contains(rotated, after)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()


def shipped_logrotate_config(tmp_path: Path, log: Path, postrotate: str | None = None) -> Path:
    """contrib/logrotate.conf for `log` instead of /var/log/netlab/chat.log (and, if given,
    another postrotate command), mode 0644 as logrotate wants its configuration."""
    text = (CONTRIB / "logrotate.conf").read_text(encoding="utf-8")
    assert "/var/log/netlab/chat.log {" in text
    text = text.replace("/var/log/netlab/chat.log", str(log))
    if postrotate is not None:
        text, count = re.subn(r"(?m)^(\s*)systemctl kill .*$", lambda m: m.group(1) + postrotate, text)
        assert count == 1
    config = tmp_path / "logrotate.conf"
    config.write_text(text, encoding="utf-8")
    config.chmod(0o644)
    return config


def run_logrotate(config: Path, *options: str) -> str:
    """Run logrotate with a state file of its own (never the system's); its output."""
    logrotate = require_command("logrotate", "logrotate")
    done = subprocess.run([logrotate, *options, "--force", "--state", str(config.with_suffix(".state")),
                           str(config)], capture_output=True, text=True, timeout=WAIT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "error" not in output.lower(), output
    return output


def test_logrotate_accepts_the_shipped_config(tmp_path):
    log = tmp_path / "chat.log"
    log.write_text("a line\n", encoding="utf-8")
    output = run_logrotate(shipped_logrotate_config(tmp_path, log), "--debug")
    assert f"renaming {log} to {log}-" in output
    assert f"creating new {log} mode = 0600" in output
    assert "running postrotate script" in output and "systemctl kill --signal=HUP" in output


def test_logrotate_rotates_a_running_server_log_losing_no_line(tmp_path):
    log = tmp_path / "logs" / "chat.log"
    server, port = serve("chat", tmp_path / "data", "--no-repl", "--log-file", str(log))
    try:
        before = cause_a_line(server, port)
        wait_file_contains(log, before)
        # The shipped config as it is, but for the signal: no systemd here, so its pid.
        run_logrotate(shipped_logrotate_config(tmp_path, log, f"kill -HUP {server.proc.pid}"))
        wait_file_contains(log, "log file reopened (SIGHUP)")
        after = cause_a_line(server, port)
        new_text = wait_file_contains(log, after)
        [rotated] = [path for path in log.parent.iterdir() if path != log]  # delaycompress: as is
        assert re.fullmatch(r"chat\.log-\d{8}-\d+", rotated.name)
        old_text = rotated.read_text(encoding="utf-8")
        assert before in old_text and after not in old_text and before not in new_text
        assert log.stat().st_mode & 0o777 == 0o600
    finally:
        server.kill()
