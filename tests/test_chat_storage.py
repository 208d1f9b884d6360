"""What the chat keeps in its data directory: secrets stay secret, the key guards the accounts."""

from __future__ import annotations

import base64
import csv
import io
import os
import secrets
import signal
import stat
from pathlib import Path

import pytest
from chatclient import ChatClient, connect, logged_in, registered
from procs import Netlab

NAME = "Zebulon42"
SECRET = "Quixotic-Marmalade-7731"
DATA_FILES = ("clients.csv", "history.csv", "netlab.key")


def stop(server: Netlab) -> None:
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def snapshot(data: Path) -> dict[str, bytes]:
    return {name: (data / name).read_bytes() for name in DATA_FILES if (data / name).exists()}


@pytest.fixture
def populated(start_chat, tmp_path):
    """A data directory after Zebulon42 registered, chatted and logged in again; server stopped."""
    data = tmp_path / "data"
    server, port = start_chat("--rate-limit", "0", data=data)
    with registered(port, NAME, SECRET) as client:
        client.say("hello from the zebra")
        client.say("second line\nwith a newline, \"quotes\" and a comma")
        with logged_in(port, NAME.lower(), SECRET) as other:
            other.say("from the other device")
    with connect(port) as wrong:
        wrong.send("login", username=NAME, password=SECRET + "x")
        wrong.expect_error("bad_credentials")
        # the password typed into the name field: the log must not keep it either
        wrong.send("login", username=SECRET, password=NAME)
        wrong.expect_error("bad_credentials")
    stop(server)
    return data


def test_no_plaintext_login_password_or_address_in_the_account_files(populated):
    for name in ("clients.csv", "netlab.key"):
        content = (populated / name).read_bytes()
        for needle in (NAME, NAME.lower(), NAME.upper(), SECRET, "127.0.0.1"):
            assert needle.encode() not in content, f"{needle!r} in {name}"
    rows = list(csv.reader(io.StringIO((populated / "clients.csv").read_text())))
    assert len(rows) == 2  # a header and one account


def test_the_password_is_in_no_file_at_all(populated):
    files = [path for path in populated.rglob("*") if path.is_file()]
    assert {"clients.csv", "history.csv", "netlab.key", "chat.log"} <= {p.name for p in files}
    for path in files:
        content = path.read_bytes()
        assert SECRET.encode() not in content, path
        assert SECRET.encode("utf-16-le") not in content, path
        assert base64.b64encode(SECRET.encode()) not in content, path
    key = (populated / "netlab.key").read_text().strip()
    assert key not in (populated / "chat.log").read_text()  # nor the key in the log


def test_history_is_rfc4180_with_the_exact_header(populated):
    raw = (populated / "history.csv").read_bytes()
    assert raw.startswith(b"seq,ts,from,text\r\n") or raw.startswith(b"seq,ts,from,text\n")
    rows = list(csv.reader(io.StringIO(raw.decode(), newline="")))
    assert rows[0] == ["seq", "ts", "from", "text"]
    assert [row[2:] for row in rows[1:]] == [
        [NAME, "hello from the zebra"],
        [NAME, "second line\nwith a newline, \"quotes\" and a comma"],
        [NAME, "from the other device"],
    ]
    seqs = [int(row[0]) for row in rows[1:]]
    assert seqs == sorted(set(seqs))


def test_the_data_directory_and_its_files_are_the_owners_alone(populated):
    # (the test runs with the usual umask, 022, which would leave them world-readable)
    assert stat.S_IMODE(populated.stat().st_mode) == 0o700
    for name in (*DATA_FILES, "chat.log"):
        mode = stat.S_IMODE((populated / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))


def other_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def refuses_to_start(data: Path, env: dict[str, str] | None = None) -> str:
    """Start a chat on `data` that must fail: exit 2, one line on stderr; that line."""
    server = Netlab("chat", "serve", "--port", "0", "--no-repl", "--data-dir", str(data), env=env)
    assert server.wait() == 2
    lines = server.err.wait_closed()
    server.kill()
    assert len(lines) == 1 and lines[0].strip(), lines
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("where", ["NETLAB_KEY", "a key file readable by others"])
def test_a_wrong_key_refuses_to_start_and_changes_nothing(populated, start_chat, where):
    env = None
    if where == "NETLAB_KEY":
        env = {"NETLAB_KEY": other_key()}
    else:
        (populated / "netlab.key").write_text(other_key())
        (populated / "netlab.key").chmod(0o644)  # its warning must not be a second line
    before = snapshot(populated)
    assert "does not match" in refuses_to_start(populated, env)
    assert snapshot(populated) == before
    if where == "NETLAB_KEY":
        # the same directory starts fine with its own key, and the account still logs in
        _, port = start_chat(data=populated)
        with logged_in(port, NAME, SECRET) as client:
            assert client.username == NAME


def test_a_missing_key_refuses_to_start_and_creates_none(populated, start_chat):
    key = populated / "netlab.key"
    saved = key.read_bytes()
    key.unlink()
    before = snapshot(populated)
    line = refuses_to_start(populated)
    assert "clients.csv holds 1 account but no key was found" in line  # what to restore is said
    assert not key.exists()
    assert snapshot(populated) == before
    # NETLAB_KEY with the same content (white space around it) takes the file's place
    env = {"NETLAB_KEY": f"  {saved.decode().strip()}\n\t"}
    server, port = start_chat(data=populated, env=env)
    with logged_in(port, NAME, SECRET) as client:
        assert [m["text"] for m in client.history()["messages"]][0] == "hello from the zebra"
    stop(server)
    assert not key.exists()  # neither read nor created while NETLAB_KEY is set


@pytest.mark.parametrize("bad", ["a directory", "a wrong header", "a corrupt record"])
def test_a_bad_history_file_refuses_to_start_and_creates_no_key(tmp_path, bad):
    data = tmp_path / "data"
    data.mkdir()
    history = data / "history.csv"
    if bad == "a directory":
        history.mkdir()
    elif bad == "a wrong header":
        history.write_bytes(b"garbage\r\n")
    else:
        history.write_bytes(b"seq,ts,from,text\r\nnot a seq,x,y,z\r\n1,x,y,z\r\n")
    assert str(history) in refuses_to_start(data)  # the line names the file at fault
    assert not (data / "netlab.key").exists()
    assert not (data / "clients.csv").exists()


def test_a_second_start_on_the_same_directory_keeps_the_key(populated, start_chat):
    key = (populated / "netlab.key").read_bytes()
    for _ in range(2):
        server, port = start_chat(data=populated)
        with logged_in(port, NAME, SECRET):
            pass
        stop(server)
    assert (populated / "netlab.key").read_bytes() == key


def test_a_fresh_directory_gets_a_key_of_32_bytes(start_chat, tmp_path):
    data = tmp_path / "new" / "nested"
    server, port = start_chat(data=data)
    ChatClient(port).close()
    key = (data / "netlab.key").read_text().strip()
    assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) == 32
    assert os.access(data / "clients.csv", os.R_OK)
    stop(server)
