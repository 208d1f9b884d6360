"""`netlab chat import` and `netlab chat export`: a chat moved from a data directory into a bus
and back out, with real processes and a real redis-server.

The round trip: an embedded server makes a chat (accounts, a public and a private room, direct
messages, read markers, a deleted room message and a deleted direct message, a ban); it is
imported into an empty bus, a `--bus` node serves it as the embedded server did, and the export
of the bus holds what the original files held (the same records, rows and sealed messages; a
deleted message's time and length are the one thing the bus does not keep) and an embedded
server on it serves the same chat again.
"""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from procs import WAIT, serve
from redis_server import running_redis
from test_chat_console import marked
from v2client import V2Client, logged_in2, registered2

from netlab.bus.export import export_chat
from netlab.bus.names import Names
from netlab.bus.publish import Publish, Publisher
from netlab.bus.records import room_body
from netlab.bus.state import BusState
from netlab.crypto import KEY_FILE, Vault, new_key, read_key
from netlab.store.direct import scan
from netlab.store.direct_records import DIRECT_FILE, Marker, Message
from netlab.store.moderation_file import in_force, read_moderation_rows
from netlab.store.records import CLIENTS_FILE, Record, parse_record, record_ends
from netlab.store.room_files import read_room_rows, snapshot_of
from netlab.store.room_records import GENERAL
from netlab.store.say_id_file import read_say_id_rows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_key_from_outside(monkeypatch) -> None:
    """Servers started here take their key from their data directory."""
    monkeypatch.delenv("NETLAB_KEY", raising=False)


def netlab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m netlab ARGS` to its end (export and import are one-shot commands)."""
    without_key = {name: value for name, value in os.environ.items() if name != "NETLAB_KEY"}
    return subprocess.run([sys.executable, "-m", "netlab", *args], cwd=ROOT,
                          env={**without_key, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=4 * WAIT, stdin=subprocess.DEVNULL)


def make_chat(start_chat, data: Path) -> dict:
    """An embedded server's chat with a bit of everything, then the server stopped."""
    server, port = start_chat("--rate-limit", "0", data=data, repl=True)
    ann, bo = registered2(port, "Ann"), registered2(port, "bo")
    registered2(port, "cy").close()
    ann.say_in("general", "hello, world", id="g1")
    regret = ann.say_in("general", 'a "quoted"\nsecond line', id="g2")
    bo.say_in("general", "hi ann")
    ann.send("create", room="lab", topic="experiments")
    ann.wait_for("joined", room="lab")
    bo.send("join", room="lab")
    bo.wait_for("joined", room="lab")
    ann.say_in("lab", "in the lab", id="l1")
    bo.say_in("lab", "me too")
    ann.send("create", room="secret", private=True)
    ann.wait_for("joined", room="secret")
    ann.send("invite", room="secret", username="bo")
    ann.wait_for("ok", op="invite")
    bo.wait_for("joined", room="secret")
    bo.say_in("secret", "psst")
    ann.send("say", to="bo", text="a direct word", id="d1")
    ann.wait_for("message", text="a direct word")
    ann.send("say", to="bo", text="one to take back", id="d2")
    ann.wait_for("message", text="one to take back")
    bo.send("say", to="Ann", text="a direct answer")
    ann.wait_for("message", text="a direct answer")
    ann.send("delete", room="general", seq=regret["seq"])
    ann.wait_for("deleted", room="general", seq=regret["seq"])
    ann.send("delete", seq=2, **{"with": "bo"})
    ann.wait_for("deleted", seq=2)
    bo.send("read", room="lab", seq=1)
    bo.send("read", seq=2, **{"with": "ann"})
    bo.send("read", room="general", seq=3)
    marked(server, "topic general all welcome", r"^topic of #general set$")
    marked(server, "ban cy  spam", r"^banned cy")
    seen_by_bo = view(bo)  # bo's reads are in once its own history answer came
    ann.close()
    bo.close()
    server.command("shutdown")
    assert server.wait() == 0
    return seen_by_bo


def view(client: V2Client) -> dict:
    """What a session is shown of the chat: its rooms and conversations, and every history."""
    client.send("rooms", all=True)
    rooms = client.wait_for("rooms")
    shown = {"rooms": rooms}
    for room in rooms["rooms"]:
        if room["member"]:
            client.send("history", room=room["room"], limit=100)
            shown[room["room"]] = client.wait_for("history", room=room["room"])["messages"]
    for conv in rooms["conversations"]:
        client.send("history", limit=100, **{"with": conv["with"]})
        shown["@" + conv["with"]] = client.wait_for("history", **{"with": conv["with"]})["messages"]
    return shown


def served(port: int) -> tuple[dict, dict]:
    """bo's view of the chat on the server at `port`, and cy's answer (banned)."""
    with logged_in2(port, "bo") as bo:
        seen = view(bo)
    with V2Client(port) as cy:
        cy.send("login", username="cy", password="correct horse battery", protocol=2)
        refused = cy.recv()
    return seen, refused


def records(path: Path) -> list[Record]:
    """Every record of a history file, each read as strictly as the store reads it."""
    body = path.read_bytes().partition(b"\n")[2]
    found = [parse_record(body[a:b]) for a, b in itertools.pairwise([0, *record_ends(body, 0)])]
    assert None not in found
    return found


def same_messages(original: Path, exported: Path) -> None:
    """The same records, byte for byte, but a deleted one's time (the bus keeps none)."""
    mine, theirs = records(original), records(exported)
    assert [r for r in mine if not r.deleted] == [r for r in theirs if not r.deleted]
    assert [r.seq for r in mine if r.deleted] == [r.seq for r in theirs if r.deleted] != []


def direct_entries(data: Path) -> tuple[list, dict]:
    found = scan(data / DIRECT_FILE, Vault(read_key(data)[0]))
    assert not found.problems
    messages = sorted((m.conversation, m.record.seq, m.record.sender, m.record.text, m.say_id,
                       m.record.ts if m.record.sender else "")
                      for _o, _n, m in found.entries if isinstance(m, Message))
    markers: dict = {}
    for _o, _n, m in found.entries:
        if isinstance(m, Marker):
            markers[m.conversation, m.account] = max(m.seq, markers.get((m.conversation, m.account), 0))
    return messages, markers


def same_files(original: Path, exported: Path) -> None:
    def lines(path: Path) -> list[bytes]:
        header, *rows = path.read_bytes().splitlines()
        return [header, *sorted(rows)]

    assert lines(original / CLIENTS_FILE) == lines(exported / CLIENTS_FILE)
    same_messages(original / "history.csv", exported / "history.csv")
    assert sorted(p.name for p in (original / "rooms").iterdir()) == ["lab.csv", "secret.csv"]
    for name in ("lab.csv", "secret.csv"):
        assert records(original / "rooms" / name) == records(exported / "rooms" / name)
    assert snapshot_of(read_room_rows(original)) == snapshot_of(read_room_rows(exported))
    assert (in_force(read_moderation_rows(original), 0, lambda _: True)
            == in_force(read_moderation_rows(exported), 0, lambda _: True) != [])
    ids = [sorted(row for _line, row in read_say_id_rows(d).rows) for d in (original, exported)]
    assert ids[0] == ids[1] != []
    # A deleted direct message's say id goes with it: the bus kept it sealed in the message
    # (its key's id set holds only a token of it, which shows nobody's account).
    messages, markers = direct_entries(original)
    kept = [m if m[2] else (*m[:4], None, m[5]) for m in messages]
    assert (kept, markers) == direct_entries(exported)


def test_a_chat_goes_into_a_bus_and_comes_back_out_the_same(tmp_path: Path, start_chat) -> None:
    original = tmp_path / "original"
    seen = make_chat(start_chat, original)
    kept = tmp_path / "kept"
    shutil.copytree(original, kept)
    key_file = original / KEY_FILE
    with running_redis(tmp_path / "redis") as redis_server:
        loaded = netlab("chat", "import", "--bus", redis_server.url, "--data-dir", str(original))
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout == ("imported 3 account(s), 2 room(s) besides general and "
                                 "9 message(s) (2 of them deleted)\n")

        node_dir = tmp_path / "node"
        node_dir.mkdir(mode=0o700)
        shutil.copy2(key_file, node_dir / KEY_FILE)
        node, port = serve("chat", node_dir, "--no-repl", "--bus", redis_server.url)
        try:
            on_bus, refused = served(port)
        finally:
            node.kill()
        assert on_bus == seen
        assert refused["type"] == "error" and refused["code"] == "banned"

        exported = tmp_path / "exported"
        exported.mkdir(mode=0o700)
        shutil.copy2(key_file, exported / KEY_FILE)
        out = netlab("chat", "export", "--bus", redis_server.url, "--data-dir", str(exported))
        assert out.returncode == 0, out.stderr
        assert out.stdout == ("exported 3 account(s), 2 room(s) besides general and "
                              "9 message(s) (2 of them deleted)\n")
    same_files(kept, exported)
    embedded, port = serve("chat", exported, "--no-repl")
    try:
        assert served(port) == (seen, refused)
    finally:
        embedded.kill()


def test_import_and_export_refuse_in_one_line_touching_nothing(tmp_path: Path) -> None:
    key = new_key()
    data = tmp_path / "data"
    data.mkdir()
    (data / "history.csv").write_bytes(b"not a history file\n")
    with running_redis(tmp_path / "redis") as redis_server, redis_server.client() as client:
        url = redis_server.url
        damaged = netlab("chat", "import", "--bus", url, "--data-dir", str(data))
        assert client.keys("*") == []  # refused before anything was written
        BusState(client, "first-node").check_key(Vault(key))
        taken = netlab("chat", "import", "--bus", url, "--data-dir", str(tmp_path / "data"))
        assert client.keys("*") == [b"netlab:keycheck"]
        wrong_key = netlab("chat", "export", "--bus", url, "--data-dir", str(tmp_path / "out"),
                           env={"NETLAB_KEY": key_text(new_key())})
        (tmp_path / "used").mkdir()
        (tmp_path / "used" / "notes.txt").write_text("mine")
        not_empty = netlab("chat", "export", "--bus", url, "--data-dir", str(tmp_path / "used"),
                           env={"NETLAB_KEY": key_text(key)})
    for proc, says in [(damaged, f"{data / 'history.csv'} does not start with the header"),
                       (taken, f"the bus at {url} is not empty"),
                       (wrong_key, f"the bus at {url} was set up with another key"),
                       (not_empty, f"cannot export to {tmp_path / 'used'}: it is not empty")]:
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.splitlines()
        assert line.startswith(f"netlab: {says}"), line
    assert not (tmp_path / "out").exists()
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["notes.txt"]


def key_text(key: bytes) -> str:
    """A key as NETLAB_KEY holds it (netlab.key's text)."""
    return base64.urlsafe_b64encode(key).decode()


def test_a_deleted_message_is_exported_in_the_deleted_form_wherever_it_is(tmp_path: Path) -> None:
    """First, last, or every message of a key deleted (XDEL'd): each seq is still in the file,
    without name or text, with a neighbour's time, and the file reads back as the store's."""
    vault = Vault(new_key())
    with running_redis(tmp_path / "redis") as redis_server, redis_server.client() as client:
        BusState(client, "a-node").check_key(vault)
        publisher = Publisher(client)
        for n in (1, 2, 3):
            publisher.publish(Publish(GENERAL, room_body(f"2026-01-01T00:00:0{n}.000Z", "Ann", f"m{n}")))
        publisher.publish(Publish("quiet", room_body("2026-01-01T00:00:04.000Z", "Ann", "gone")))
        for key, seq in ((GENERAL, 1), (GENERAL, 3), ("quiet", 1)):
            assert BusState(client, "a-node", names=Names(vault)).delete_message(key, seq)
        moved = export_chat(client, redis_server.url, vault, tmp_path / "out")
    assert str(moved) == ("exported 0 account(s), 1 room(s) besides general and 4 message(s) "
                          "(3 of them deleted)")
    kept = "2026-01-01T00:00:02.000Z"
    assert records(tmp_path / "out" / "history.csv") == [
        Record(1, kept, "", "-"), Record(2, kept, "Ann", "m2"), Record(3, kept, "", "-")]
    [gone] = records(tmp_path / "out" / "rooms" / "quiet.csv")
    assert gone.seq == 1 and gone.deleted
