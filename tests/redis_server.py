"""A real `redis-server` for the bus's tests: one per test, on a free loopback port.

Started from Debian's `redis-server` in a directory of the test's tmp_path, configured as
docs/scale-out.md asks of a bus (`appendonly yes`, `appendfsync always`: a publish is fsynced
before Redis answers it; no RDB snapshots, so the AOF is the only persistence, and what a
restart finds is exactly what the AOF holds). Outside CI a machine without redis-server
skips these tests; in CI (`NETLAB_CI=1`, `.ci/run` installs it) it is a failure.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis
from procs import WAIT, LineLog
from system_tools import require_command

from netlab.tls import make_certificate

#: Redis' line once it loaded its AOF and listens.
READY = r"Ready to accept connections"
#: Tries at a free port: another test may take the port between our probe and Redis' bind.
PORT_TRIES = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process over `directory`; `restart` keeps its port and its AOF.

    `password` makes it ask one of the default user (`requirepass`), `users` adds ACL users
    (name to password, all commands and keys); `tls` makes its one port TLS-only, with a
    self-signed certificate for 127.0.0.1 and localhost that is its own CA (`self.ca`)."""

    def __init__(self, directory: Path, password: str | None = None, users: dict[str, str] | None = None,
                 tls: bool = False) -> None:
        self.executable = require_command("redis-server", "redis-server")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.output: LineLog | None = None
        self.password = password
        self.users = users or {}
        self.ca, self.key = make_certificate(directory / "tls") if tls else (None, None)

    @property
    def url(self) -> str:
        return f"{'rediss' if self.ca else 'redis'}://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new client of this server (one per thread: tests' threads must not share one)."""
        return redis.Redis(host="127.0.0.1", port=self.port, db=0, socket_timeout=WAIT,
                           password=self.password, ssl=self.ca is not None,
                           ssl_ca_certs=str(self.ca) if self.ca else None)

    def _security(self, port: int) -> list[str]:
        """The command line's port, password and TLS options."""
        args = ["--port", str(port)] if self.ca is None else [
            "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(self.ca),
            "--tls-key-file", str(self.key), "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        for name, password in self.users.items():
            args += ["--user", name, "on", f">{password}", "~*", "&*", "+@all"]
        return args

    def start(self) -> None:
        """Start on a free port (or the port it had: a restart), and wait for it to answer."""
        for _ in range(1 if self.port else PORT_TRIES):
            port = self.port or free_port()
            if self._launch(port):
                self.port = port
                with self.client() as client:
                    assert client.ping()
                return
        raise AssertionError(f"redis-server did not start: {self.output.lines[-20:] if self.output else ''}")

    def _launch(self, port: int) -> bool:
        """Run redis-server on `port`; whether it became ready (False: it exited, e.g. the
        port was taken meanwhile)."""
        self.process = subprocess.Popen(
            [self.executable, *self._security(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--maxmemory-policy", "noeviction", "--daemonize", "no", "--logfile", ""],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = LineLog(self.process.stdout)
        try:
            self.output.wait_for(READY)
        except AssertionError:
            self.process.wait(WAIT)
            return False
        return True

    def stop(self) -> None:
        """SIGTERM: Redis finishes its AOF and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(WAIT)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port, from the AOF alone."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running_redis(directory: Path, **security) -> Iterator[RedisServer]:
    """A started RedisServer over `directory` (`security`: RedisServer's password, users and
    tls), stopped afterwards whatever the test did."""
    server = RedisServer(directory, **security)
    server.start()
    try:
        yield server
    finally:
        server.stop()
