"""How both servers take their options at start: usage errors, and where the log may go."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from procs import WAIT, serve, wait_file_contains

SERVERS = ["echo", "chat"]

# Each is a usage error for both servers, whichever part of click finds it.
BAD_OPTIONS = [
    ["--data-dir"],  # an option without its value, last on the line
    ["--log-file"],
    ["--port"],
    ["--port", "x"],
    ["--port", "65536"],
    ["--max-clients", "0"],
    ["--host", ""],
    ["--bogus"],
    ["stray"],
    ["--tls-cert", "cert.pem"],  # without --tls-key: found by the command itself
]


@pytest.mark.parametrize("kind", SERVERS)
@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=" ".join)
def test_every_usage_error_is_clicks_whole_one(tmp_path: Path, kind: str, bad: list[str]):
    # --port 0 first: a server that wrongly starts takes no fixed port, and times out below.
    command = [sys.executable, "-m", "netlab", kind, "serve", "--no-repl", "--port", "0", *bad]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=WAIT,
                          stdin=subprocess.DEVNULL)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[0] == f"Usage: netlab {kind} serve [OPTIONS]", proc.stderr
    assert lines[1] == f"Try 'netlab {kind} serve --help' for help.", proc.stderr
    assert lines[-1].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing touched


@pytest.mark.parametrize("kind", SERVERS)
def test_log_file_in_a_missing_directory_creates_it_owner_only(tmp_path: Path, kind: str):
    log_file = tmp_path / "logs" / "netlab" / f"{kind}.log"
    server, _ = serve(kind, tmp_path / "data", "--no-repl", "--log-file", str(log_file))
    try:
        wait_file_contains(log_file, "listening on")
        for made in (log_file.parent, log_file.parent.parent):
            assert stat.S_IMODE(made.stat().st_mode) == 0o700
        assert not (tmp_path / "data" / f"{kind}.log").exists()
    finally:
        server.kill()


def test_log_file_under_a_file_is_one_line_and_status_two(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file")
    proc = subprocess.run([sys.executable, "-m", "netlab", "echo", "serve", "--no-repl", "--port", "0",
                           "--data-dir", str(tmp_path / "data"), "--log-file", str(blocker / "echo.log")],
                          capture_output=True, text=True, timeout=WAIT)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"netlab: cannot write the log file {blocker / 'echo.log'}: {blocker} is a file, not a directory"
    ]
