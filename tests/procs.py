"""Run netlab as a real subprocess and wait on what it prints.

Every wait is on an event (a line matching a pattern, the process exiting),
never on a sleep: a reader thread per stream appends lines under a condition
variable, and waiters wake as each line lands.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

WAIT = 15.0  # generous ceiling for a loaded CI machine; waits end on events


class LineLog:
    """Lines read from one stream by a background thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        # Netlab.kill closes the stream, maybe while this thread reads it: an end, too.
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, start: int = 0, timeout: float = WAIT) -> tuple[re.Match, int]:
        """The first line at or after index `start` matching `pattern`, and its index."""
        regex = re.compile(pattern)
        with self._cond:
            index = start
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return match, index
                    index += 1
                if self.closed:
                    raise AssertionError(f"stream ended without {pattern!r}: {self.lines[-20:]}")
                if not self._cond.wait(timeout):
                    raise AssertionError(f"no {pattern!r} within {timeout}s: {self.lines[-20:]}")

    def wait_closed(self, timeout: float = WAIT) -> list[str]:
        """Every line, once the stream has ended."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.closed, timeout):
                raise AssertionError(f"stream still open after {timeout}s")
            return list(self.lines)

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def __len__(self) -> int:
        with self._cond:
            return len(self.lines)


class Netlab:
    """`python -m netlab ARGS` with piped stdin, stdout and stderr.

    `env` adds to this process's environment; a value of None removes the
    variable. With `read_stderr` False, stderr is a pipe nobody reads.
    `open_files` sets its limit on open files (soft and hard, as `ulimit -n`);
    `file_size` the largest file it may write, in bytes (as `ulimit -f`: past
    it a write fails with EFBIG, as on a full disk; root is bound too);
    `stdin` False starts it with standard input closed (as `0<&-`).
    """

    def __init__(self, *args: str, env: dict[str, str | None] | None = None, cwd: Path | None = None,
                 read_stderr: bool = True, open_files: int | None = None, stdin: bool = True,
                 file_size: int | None = None) -> None:
        merged = {**os.environ, **(env or {})}

        def in_child() -> None:
            if open_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
            if file_size:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
            if not stdin:
                os.close(0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netlab", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            env={name: value for name, value in merged.items() if value is not None}, cwd=cwd,
            preexec_fn=in_child if open_files or file_size or not stdin else None,
        )
        self.out = LineLog(self.proc.stdout)
        self.err = LineLog(self.proc.stderr) if read_stderr else None

    def listening_port(self) -> int:
        match, _ = self.out.wait_for(r"listening on (?:\[[^\]]+\]|[^\s:]+):(\d+)")
        return int(match.group(1))

    def command(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = WAIT) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def serve(kind: str, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[Netlab, int]:
    """Start `netlab KIND serve --port 0` and return it with its port."""
    server = Netlab(kind, "serve", "--port", "0", "--data-dir", str(data_dir), *extra, env=env)
    return server, server.listening_port()


def spawn_terminal(*args: str, env: dict[str, str] | None = None, columns: int = 120):
    """`python -m netlab ARGS` on a pseudo-terminal (pexpect).

    pexpect answers no cursor-position request (CPR), as many serial consoles do;
    netlab must not need one, so prompt_toolkit's switch for that is not set here.
    """
    import pexpect

    inherited = {name: value for name, value in os.environ.items() if name != "PROMPT_TOOLKIT_NO_CPR"}
    full_env = {**inherited, "TERM": "xterm", **(env or {})}
    return pexpect.spawn(sys.executable, ["-m", "netlab", *args], env=full_env, encoding="utf-8",
                         timeout=WAIT, dimensions=(40, columns))


def assert_exits_zero(child) -> None:
    """The terminal program ends by itself, with status 0."""
    assert_exits_with(child, 0)


def assert_exits_with(child, status: int) -> None:
    """The terminal program ends by itself, with `status`."""
    import pexpect

    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == status


def wait_until(condition: Callable[[], bool], timeout: float = WAIT, interval: float = 0.01) -> None:
    """Poll state no event announces (a file the server writes, the kernel's socket table,
    the console's status)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(interval)


def wait_file_contains(path: Path, needle: str, timeout: float = WAIT) -> str:
    """Wait for a file the server writes to contain `needle`; returns its text."""

    def read() -> str:
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    try:
        wait_until(lambda: needle in read(), timeout)
    except AssertionError:
        raise AssertionError(f"{path} never contained {needle!r}: {read()[-500:]!r}") from None
    return read()


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, every thread) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_idles(pid: int, window: float = 1.0) -> None:
    """The process uses almost no CPU for `window` seconds (a loop that spins uses it all).

    The one wait on the clock in these tests: spinning has no event to wait on.
    """
    import time

    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
    assert used < 0.2 * elapsed, f"{used:.2f} s of CPU in {elapsed:.2f} s with nothing to do"
