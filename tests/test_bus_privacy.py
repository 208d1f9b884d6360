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
from pathlib import Path

import pytest
from bus_cluster import running_cluster, sees_online
from disk_search import files_holding, forms
from procs import wait_until
from v2client import registered2

from netlab.crypto import Vault

TEXTS = ("meet me at the old mill at nine", "bring the second key, not the first")


def test_redis_holds_no_direct_message_text_and_no_pair(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 2) as cluster:
        alice = registered2(cluster.port(0), "alice")
        bob = registered2(cluster.port(1), "bob")
        wait_until(lambda: sees_online(alice, "bob"))
        alice.send("say", to="bob", text=TEXTS[0], id="a1")
        first = bob.wait_for("message")
        bob.send("say", to="alice", text=TEXTS[1], id="b1")
        alice.wait_for("message", text=TEXTS[1])
        bob.send("read", **{"with": "alice"}, seq=first["seq"])
        alice.send("read", **{"with": "bob"}, seq=2)
        alice.send("delete", **{"with": "bob"}, seq=first["seq"])
        bob.wait_for("deleted")
        with cluster.redis.client() as redis:
            ids = account_ids(redis, Vault(base64.urlsafe_b64decode(cluster.key)))
            dump = everything(redis)
            linked = by_conversation(redis)
    directory = cluster.redis.directory  # its AOF, as the stopped Redis left it
    assert any(path.is_file() and path.stat().st_size for path in directory.rglob("*"))  # searched
    for text in TEXTS:
        assert not [piece for piece in dump if any(form in piece for form in forms(text))]
        assert files_holding(directory, text) == []
    assert [piece for piece in dump if all(i.encode() in piece for i in ids)] == []
    # No fan-out entry about a conversation (its token, or its sealed pair or marker) names an
    # account beside it: who reads how far, or says what, would link the account to the pair.
    about = [piece for piece in dump if any(mark in piece for mark in (b"k=d:", b'"c":', b'"m":'))]
    assert about and [piece for piece in about if any(i.encode() in piece for i in ids)] == []
    assert linked and [token for token, held in linked.items() if all(i.encode() in held for i in ids)] == []
    for path in directory.rglob("*"):
        if path.is_file():
            for line in path.read_bytes().split(b"\n"):
                assert not all(i.encode() in line for i in ids), path.name


def account_ids(client, vault: Vault) -> list[str]:
    rows = [json.loads(row) for row in client.hvals("netlab:accounts")]
    assert len(rows) == 2
    return [vault.account_id(row[0], row[4]) for row in rows]


def by_conversation(client) -> dict[bytes, bytes]:
    """All Redis shows beside each conversation's token, joined: its keys' names, members,
    fields and values, and the fan-out entries of it. Two pieces each naming one account
    still show the pair when one token links them."""
    held: dict[bytes, bytes] = {}
    for name in client.scan_iter(match="netlab:*:d:*", count=1000):
        token = name.rpartition(b":")[2]
        kind = client.type(name)
        pieces = client.zrange(name, 0, -1) if kind == b"zset" else [
            value for _id, fields in client.xrange(name) for value in fields.values()]
        held[token] = held.get(token, b"") + b" ".join(pieces)
    for _id, fields in client.xrange("netlab:fanout"):
        if fields.get(b"k", b"").startswith(b"d:"):
            token = fields[b"k"][2:]
            held[token] = held.get(token, b"") + b" " + b" ".join(fields.values())
    return held


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
        elif kind == b"set":  # the nodes' registry: node ids
            found += client.smembers(name)
        elif kind == b"stream":
            for _id, fields in client.xrange(name):
                found.append(b" ".join(k + b"=" + v for k, v in fields.items()))
        else:
            pytest.fail(f"a Redis key of a type this test does not read: {name!r} {kind!r}")
    return found
