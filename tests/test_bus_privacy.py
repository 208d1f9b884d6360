"""What Redis holds of direct messages: no text, and not who talks to whom.

Two nodes, alice on one and bob on the other, write to each other, move their read markers
and delete a message. Then everything Redis has (every key, field, value and stream entry,
and its AOF on disk) is searched: the messages' texts in every form they could take
(tests/disk_search.py), and any one name, field, value or entry that holds both accounts'
ids, which would show the pair (docs/scale-out.md, "What Redis shows").
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest
from disk_search import files_holding, forms
from procs import Netlab
from redis_server import running_redis
from v2client import registered2

from netlab.crypto import KEY_BYTES, KEY_ENV, Vault

TEXTS = ("meet me at the old mill at nine", "bring the second key, not the first")


def test_redis_holds_no_direct_message_text_and_no_pair(tmp_path: Path) -> None:
    key = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    with running_redis(tmp_path / "redis") as redis_server:
        nodes = [Netlab("chat", "serve", "--no-repl", "--port", "0", "--data-dir", str(tmp_path / f"n{i}"),
                        "--bus", redis_server.url, env={KEY_ENV: key}) for i in (1, 2)]
        try:
            alice = registered2(nodes[0].listening_port(), "alice")
            bob = registered2(nodes[1].listening_port(), "bob")
            alice.send("say", to="bob", text=TEXTS[0], id="a1")
            first = bob.wait_for("message")
            bob.send("say", to="alice", text=TEXTS[1], id="b1")
            alice.wait_for("message", text=TEXTS[1])
            bob.send("read", **{"with": "alice"}, seq=first["seq"])
            alice.send("read", **{"with": "bob"}, seq=2)
            alice.send("delete", **{"with": "bob"}, seq=first["seq"])
            bob.wait_for("deleted")
            ids = account_ids(redis_server.client(), Vault(base64.urlsafe_b64decode(key)))
            dump = everything(redis_server.client())
        finally:
            for node in nodes:
                node.kill()
        redis_server.stop()
        for text in TEXTS:
            assert not [piece for piece in dump if any(form in piece for form in forms(text))]
            assert files_holding(redis_server.directory, text) == []
        pairs = [piece for piece in dump if all(i.encode() in piece for i in ids)]
        assert pairs == []
        for path in redis_server.directory.rglob("*"):
            if path.is_file():
                for line in path.read_bytes().split(b"\n"):
                    assert not all(i.encode() in line for i in ids), path.name


def account_ids(client, vault: Vault) -> list[str]:
    rows = [json.loads(row) for row in client.hvals("netlab:accounts")]
    assert len(rows) == 2
    return [vault.account_id(row[0], row[4]) for row in rows]


def everything(client) -> list[bytes]:
    """Every key name, hash field and value, set member, string and stream entry field."""
    found: list[bytes] = []
    for name in client.scan_iter(count=1000):
        found.append(name)
        kind = client.type(name)
        if kind == b"hash":
            for field, value in client.hgetall(name).items():
                found += [field, value]
        elif kind == b"string":
            found.append(client.get(name))
        elif kind == b"zset":
            found += client.zrange(name, 0, -1)
        elif kind == b"stream":
            for _id, fields in client.xrange(name):
                found.append(b" ".join(k + b"=" + v for k, v in fields.items()))
        else:
            pytest.fail(f"a Redis key of a type this test does not read: {name!r} {kind!r}")
    return found
