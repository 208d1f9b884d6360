"""`chat serve --bus URL` at start-up: the URL's rules, and the check before anything is touched.

A node whose key is not the bus's is refused too, in one line: its logins and direct
messages would not open anywhere else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from procs import WAIT
from redis_server import free_port, running_redis

from netlab.bus.address import BusAddress, parse_bus_url
from netlab.bus.state import BusState
from netlab.crypto import Vault, new_key

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("url", "address"), [
    ("redis://127.0.0.1:6380/2", BusAddress("127.0.0.1", 6380, 2)),
    ("redis://bus.example", BusAddress("bus.example", 6379, 0)),  # Redis' own defaults
    ("redis://[::1]:7000/0", BusAddress("::1", 7000, 0)),
])
def test_a_bus_url_names_host_port_and_database(url: str, address: BusAddress) -> None:
    assert parse_bus_url(url) == address
    assert parse_bus_url(address.url) == address


@pytest.mark.parametrize("url", [
    "http://h:1/0", "h:1", "redis://", "redis://:1/0", "redis://h:x/0", "redis://h:70000/0",
    "redis://h:0/0", "redis://h/a", "redis://h/1/2", "redis://h/1?x=1", "redis://user:secret@h/0",
])
def test_a_bad_bus_url_is_a_bad_option(tmp_path: Path, url: str) -> None:
    proc = serve_with_bus(tmp_path, url)
    assert proc.returncode == 2
    assert "Invalid value for '--bus'" in proc.stderr
    assert "secret" not in proc.stderr  # a password typed into the URL is not echoed
    assert not (tmp_path / "data").exists()


def test_an_unreachable_bus_is_one_line_and_exit_2_touching_nothing(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    proc = serve_with_bus(tmp_path, url)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"netlab: cannot reach the bus at {url}: "), line
    assert not (tmp_path / "data").exists()


def test_a_node_with_another_key_than_the_bus_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis") as server, server.client() as client:
        BusState(client, "first-node").check_key(Vault(new_key()))  # the bus's first node's key
        proc = serve_with_bus(tmp_path, server.url)  # no key: it would make a new one
        assert client.keys("*") == [b"netlab:keycheck"]  # nothing else written to the bus
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line == (f"netlab: the bus at {server.url} was set up with another key: give every node "
                    "the same key (NETLAB_KEY, or a copy of netlab.key)")
    assert not (tmp_path / "data" / "netlab.key").exists()  # the new key was not kept


def serve_with_bus(tmp_path: Path, url: str, *extra: str,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`chat serve --bus URL EXTRA` expected to stop at start-up, without NETLAB_KEY unless `env`
    gives one. --port 0: a server that wrongly starts takes no fixed port, and times out here."""
    without_key = {name: value for name, value in os.environ.items() if name != "NETLAB_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "netlab", "chat", "serve", "--no-repl", "--port", "0",
         "--data-dir", str(tmp_path / "data"), "--bus", url, *extra],
        cwd=tmp_path, env={**without_key, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True, text=True, timeout=WAIT, stdin=subprocess.DEVNULL)


def test_the_first_node_makes_the_key_says_so_and_keeps_it_0600(tmp_path: Path) -> None:
    from procs import serve, wait_file_contains

    with running_redis(tmp_path / "redis") as redis:
        server, _ = serve("chat", tmp_path / "data", "--no-repl", "--bus", redis.url)
        try:
            wait_file_contains(tmp_path / "data" / "chat.log",
                               f"created a new key in {tmp_path / 'data' / 'netlab.key'}: give it")
            assert (tmp_path / "data" / "netlab.key").stat().st_mode & 0o777 == 0o600
        finally:
            server.kill()
