"""A bus behind a password and TLS (docs/scale-out.md, "Security"): `rediss://` with
`--bus-ca`, the password in NETLAB_BUS_PASSWORD (and an ACL user in NETLAB_BUS_USER).

Real redis-servers asking a password, with ACL users, TLS-only; real nodes, real `chat
export` and `chat import`. A password or certificate that does not do is one line naming
what to fix and exit status 2, nothing touched; the password shows nowhere.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from bus_cluster import cluster_on, say_until_stored
from chatclient import registered
from procs import Netlab
from redis_server import running_redis
from test_bus_export import netlab, records
from test_bus_start import serve_with_bus
from v2client import registered2

from netlab.bus.address import PASSWORD_ENV, USER_ENV, BusAddress, parse_bus_url
from netlab.crypto import KEY_FILE
from netlab.tls import make_certificate

ROOT = Path(__file__).resolve().parent.parent
#: The default user's password and an ACL user's: distinct, so a log holding either is found.
PASSWORD = "default-user-pass-7f3a"
NODE_USER, NODE_PASSWORD = "nodes", "acl-user-pass-91c2"


@pytest.fixture(autouse=True)
def _no_bus_credentials_from_outside(monkeypatch) -> None:
    for name in (PASSWORD_ENV, USER_ENV, "NETLAB_KEY"):
        monkeypatch.delenv(name, raising=False)


def refused(proc: subprocess.CompletedProcess, tmp_path: Path) -> str:
    """The one line of a start-up refused with exit status 2, the data directory untouched."""
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert not (tmp_path / "data").exists()
    return line


def test_a_rediss_url_is_a_bus_over_tls() -> None:
    assert parse_bus_url("rediss://bus.example:6380/1") == BusAddress("bus.example", 6380, 1, tls=True)
    assert parse_bus_url("rediss://bus.example").url == "rediss://bus.example:6379/0"


def test_bus_ca_without_a_rediss_url_is_a_bad_option(tmp_path: Path) -> None:
    ca, _key = make_certificate(tmp_path / "tls")
    proc = serve_with_bus(tmp_path, "redis://127.0.0.1:1/0", "--bus-ca", str(ca))
    assert proc.returncode == 2
    assert "Error: --bus-ca needs a rediss:// bus (TLS)" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_nodes_over_tls_as_an_acl_user_share_one_chat_also_after_a_redis_restart(tmp_path: Path) -> None:
    """...and show the password nowhere. After the restart every thread reconnects with TLS
    and the password (redis-py keeps the client's connection options)."""
    guarded = {"password": PASSWORD, "users": {NODE_USER: NODE_PASSWORD}, "tls": True}
    with running_redis(tmp_path / "redis", **guarded) as bus, \
            cluster_on(bus, tmp_path, 2, "--bus-ca", str(bus.ca),
                       env={USER_ENV: NODE_USER, PASSWORD_ENV: NODE_PASSWORD}) as cluster:
        alice, bob = registered2(cluster.port(0), "alice"), registered2(cluster.port(1), "bob")
        said = alice.say_in("general", "over tls, from node 0")
        assert bob.wait_for("message", text="over tls, from node 0")["seq"] == said["seq"]
        bob.say_in("general", "and back from node 1")
        alice.wait_for("message", text="and back from node 1")
        bus.restart()
        say_until_stored(bob, "general", "after the restart", "r1")
        alice.wait_for("message", text="after the restart")
        cluster.stop()
        for node in cluster.nodes:
            shown = node.server.err.text() + node.server.out.text() + (node.data_dir / "chat.log").read_text()
            assert NODE_PASSWORD not in shown and PASSWORD not in shown


def test_a_missing_or_wrong_password_is_one_line_naming_the_variable_and_exit_2(tmp_path: Path) -> None:
    with running_redis(tmp_path / "redis", password=PASSWORD, users={NODE_USER: NODE_PASSWORD}) as bus:
        for env in ({}, {PASSWORD_ENV: "not-the-password"}, {PASSWORD_ENV: NODE_PASSWORD},
                    {USER_ENV: NODE_USER, PASSWORD_ENV: PASSWORD},
                    {USER_ENV: "nobody", PASSWORD_ENV: PASSWORD}):
            line = refused(serve_with_bus(tmp_path, bus.url, env=env), tmp_path)
            assert line.startswith(f"netlab: the bus at {bus.url} ") and PASSWORD_ENV in line, line
            assert PASSWORD not in line and NODE_PASSWORD not in line and "not-the-password" not in line
        node = Netlab("chat", "serve", "--no-repl", "--port", "0", "--data-dir", str(tmp_path / "data"),
                      "--bus", bus.url, env={PASSWORD_ENV: PASSWORD})  # the default user, its password
        try:
            node.listening_port()
        finally:
            node.kill()
        assert PASSWORD not in node.err.text() + (tmp_path / "data" / "chat.log").read_text()


def test_a_certificate_that_does_not_verify_or_a_plain_url_to_tls_is_one_line_and_exit_2(tmp_path):
    with running_redis(tmp_path / "redis", tls=True) as bus:
        line = refused(serve_with_bus(tmp_path, bus.url), tmp_path)  # its CA is in no system store
        assert line.startswith(f"netlab: the bus's certificate at {bus.url} did not verify ("), line
        assert line.endswith("): give --bus-ca FILE with the CA that signed it"), line
        plain = bus.url.replace("rediss://", "redis://")
        line = refused(serve_with_bus(tmp_path, plain), tmp_path)
        assert line.startswith(f"netlab: cannot reach the bus at {plain}: "), line


def test_export_and_import_go_over_tls_with_the_password(tmp_path: Path, start_chat) -> None:
    original = tmp_path / "original"
    server, port = start_chat(data=original, repl=True)
    registered(port, "alice").say("one message through a guarded bus")
    server.command("shutdown")
    assert server.wait() == 0
    exported = tmp_path / "exported"
    exported.mkdir(mode=0o700)
    shutil.copy2(original / KEY_FILE, exported / KEY_FILE)  # the bus's key: export opens its accounts
    with running_redis(tmp_path / "redis", password=PASSWORD, tls=True) as bus:
        guarded = ("--bus", bus.url, "--bus-ca", str(bus.ca))
        for command, data_dir in (("import", original), ("export", exported)):
            done = netlab("chat", command, *guarded, "--data-dir", str(data_dir),
                          env={PASSWORD_ENV: PASSWORD})
            assert done.returncode == 0, done.stderr
            assert PASSWORD not in done.stdout + done.stderr
    assert records(exported / "history.csv") == records(original / "history.csv") != []
