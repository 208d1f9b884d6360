"""Every node's cache of the bus's accounts (netlab/bus/accounts.py) against a real redis-server.

Two nodes with one key: what one registers, changes or removes is in Redis at once and in the
other's cache when it applies the event (`learn`, `forget`, as BusNode does); a name taken on
one node is taken on the other even before the event arrives; rows sealed with another key
are skipped, never half read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis_server import RedisServer, running_redis

from netlab.bus.accounts import BusAccounts
from netlab.bus.publish import FanoutEvent, Publisher
from netlab.bus.state import ACCOUNTS, BusState
from netlab.crypto import Vault, new_key
from netlab.store.accounts import UsernameTaken


@pytest.fixture
def server(tmp_path: Path):
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def nodes(server: RedisServer):
    """Two nodes' accounts over one bus, with one key, started on an empty bus."""
    vault = Vault(new_key())
    with server.client() as one, server.client() as two:
        yield BusAccounts(BusState(one, "one"), vault, []), BusAccounts(BusState(two, "two"), vault, [])


def catch_up(server: RedisServer, node: BusAccounts, seen: list[bytes]) -> None:
    """Apply the fan-out stream's account events after `seen` to `node`, as its reader would."""
    with server.client() as client:
        entries = Publisher(client).read_fanout(seen[0], 1000)
    for entry in entries:
        seen[0] = entry.id
        if isinstance(entry, FanoutEvent):
            event = json.loads(entry.event)
            if event["t"] in ("account", "password"):
                node.learn(event["row"])
            elif event["t"] == "removed":
                node.forget(event["id"])


def test_a_registration_on_one_node_is_learnt_by_the_other(nodes, server: RedisServer) -> None:
    one, two = nodes
    ann = one.add("Ann", "$hash1", "192.0.2.1")
    assert one.get("ANN") is ann and one.by_id(ann.id) is ann and len(one) == 1
    assert two.get("ann") is None
    with pytest.raises(UsernameTaken):
        two.add("aNN", "$other", "192.0.2.2")  # the bus has the name: taken before the event
    with pytest.raises(UsernameTaken):
        one.add("ann", "$other", "192.0.2.2")
    catch_up(server, two, [b"0"])
    learnt = two.get("Ann")
    assert learnt is not None
    assert (learnt.username, learnt.password_hash, learnt.id) == ("Ann", "$hash1", ann.id)
    assert two.by_id(ann.id) is learnt and len(two) == 1
    with server.client() as client:
        stored = [json.loads(row) for row in client.hvals(ACCOUNTS)]
    assert len(stored) == 1 and "Ann" not in json.dumps(stored) and "192.0.2.1" not in json.dumps(stored)


def test_a_password_change_reaches_the_other_nodes_account_in_place(nodes, server: RedisServer) -> None:
    one, two = nodes
    seen = [b"0"]
    ann = one.add("Ann", "$hash1", "192.0.2.1")
    catch_up(server, two, seen)
    theirs = two.get("Ann")
    one.set_password(ann, "$hash2")
    assert ann.password_hash == "$hash2"
    catch_up(server, two, seen)
    assert two.get("Ann") is theirs and theirs.password_hash == "$hash2"  # its sessions see it too
    restarted = BusAccounts(BusState(two._state.client, "three"), two.vault, one._state.load(1).accounts)
    assert restarted.get("ann").password_hash == "$hash2"


def test_a_removed_account_is_gone_everywhere_and_its_password_cannot_change(nodes,
                                                                             server: RedisServer) -> None:
    one, two = nodes
    seen = [b"0"]
    ann = one.add("Ann", "$hash1", "192.0.2.1")
    one.add("Bob", "$hash1", "192.0.2.1")
    catch_up(server, two, seen)
    theirs = two.get("Ann")
    two.remove(theirs)
    assert two.get("Ann") is None and two.by_id(ann.id) is None
    with pytest.raises(KeyError):
        two.remove(theirs)
    with pytest.raises(KeyError):
        one.set_password(ann, "$late")  # removed on node two: the bus refuses, not a resurrection
    catch_up(server, one, seen)
    assert one.get("ann") is None and len(one) == 1
    with pytest.raises(KeyError):
        one.set_password(ann, "$late")
    again = one.add("ann", "$hash3", "192.0.2.1")  # the name is free again: a new account
    assert one.get("ANN") is again and one.by_id(ann.id) is None
    assert one.clear() == 2 and len(one) == 0
    catch_up(server, two, seen)
    assert len(two) == 0 and one._state.load(1).accounts == []


def test_a_row_sealed_with_another_key_is_skipped(nodes) -> None:
    one, _ = nodes
    stranger = Vault(new_key())
    row = [stranger.blind_index("Eve"), stranger.encrypt("Eve", "login"), "$h", stranger.encrypt("x", "ip"),
           "2026-12-05T10:00:00.000Z"]
    assert one.learn(row) is None
    assert one.learn([row[0], "not a token", *row[2:]]) is None
    assert len(one) == 0 and one.get("Eve") is None


def test_clear_removes_every_account_in_one_step_and_the_other_node_forgets_them(nodes,
                                                                                 server: RedisServer) -> None:
    """The console's `clear file` in bus mode: one MULTI/EXEC however many accounts, with each
    removal's event, so every other node forgets each of them too."""
    one, two = nodes
    seen = [b"0"]
    for n in range(50):
        one.add(f"user{n}", "$hash", "192.0.2.1")
    catch_up(server, two, seen)
    assert len(two) == 50
    with server.client() as client:
        before = client.info("commandstats")
        assert one.clear() == 50
        after = client.info("commandstats")
    assert len(one) == 0 and one._state.load(1).accounts == []
    assert after["cmdstat_exec"]["calls"] - before.get("cmdstat_exec", {"calls": 0})["calls"] == 1
    catch_up(server, two, seen)
    assert len(two) == 0
