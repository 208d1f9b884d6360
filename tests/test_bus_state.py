"""The chat's state in the bus (netlab/bus/state.py) against a real redis-server.

What the nodes rely on: a conditional write has one winner however many nodes race for it
(a name registered twice, a room created twice); every change lands in the fan-out stream
with the node that made it, in the order Redis took them; a starting node's `load` reads
back exactly what was written, and the stream's end to read on from; and a node with
another key than the bus's is refused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from redis_server import RedisServer, running_redis

from netlab.bus.names import Names
from netlab.bus.publish import FANOUT, FanoutEvent, Publish, Publisher, key_text
from netlab.bus.records import room_body
from netlab.bus.state import ACCOUNTS, KEY_CHECK, ROOMS, BusState, KeyMismatch, general_records
from netlab.crypto import Vault, new_key
from netlab.store.records import Record
from netlab.store.room_records import GENERAL, Restriction, RoomRecord, conversation

ANN, BOB = "a" * 32, "b" * 32
TS = "2026-12-05T10:00:00.000Z"
LATER = "2026-12-05T10:00:01.000Z"


@pytest.fixture
def server(tmp_path: Path):
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def node(server: RedisServer):
    with server.client() as client:
        yield BusState(client, "one", names=Names(Vault(new_key())))


def account_row(vault: Vault, name: str, created: str = TS, password_hash: str = "$argon2id$h") -> list[str]:
    return [vault.blind_index(name), vault.encrypt(name, "login"), password_hash, vault.encrypt("::1", "ip"),
            created]


def race(server: RedisServer, write: Callable[[BusState, int], bool], nodes: int = 4) -> list[bool]:
    """`write` run by `nodes` nodes at once (one client each), released together."""
    results: list[bool] = [False] * nodes
    start = threading.Barrier(nodes)

    def run(index: int) -> None:
        with server.client() as client:
            state = BusState(client, f"node{index}")
            start.wait()
            results[index] = write(state, index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def events(server: RedisServer) -> list[tuple[str, dict]]:
    """The fan-out stream's changes, as (node, event)."""
    with server.client() as client:
        entries = Publisher(client).read_fanout(b"0", 10_000)
    return [(e.node, json.loads(e.event)) for e in entries if isinstance(e, FanoutEvent)]


def test_a_name_registered_on_several_nodes_at_once_is_one_account(server: RedisServer) -> None:
    vault = Vault(new_key())
    for round_ in range(5):
        name = f"user{round_}"
        rows = [account_row(vault, name, f"2026-12-05T10:00:0{n}.000Z") for n in range(4)]
        won = race(server, lambda state, i: state.add_account(rows[i]))  # noqa: B023 - joined in the loop
        assert won.count(True) == 1, won
        with server.client() as client:
            assert json.loads(client.hget(ACCOUNTS, vault.blind_index(name))) == rows[won.index(True)]
    registered = [(node, e["row"][4]) for node, e in events(server) if e["t"] == "account"]
    assert len(registered) == 5  # the losers wrote no event


def test_a_room_created_on_several_nodes_at_once_has_one_creator(server: RedisServer) -> None:
    for round_ in range(5):
        rooms = [RoomRecord(f"room{round_}", False, f"{n}" * 32, "", f"2026-12-05T10:00:0{n}.000Z")
                 for n in range(4)]
        won = race(server, lambda state, i: state.save_room(rooms[i], rooms[i].owner, new=True))  # noqa: B023
        assert won.count(True) == 1, won
    assert len([e for _, e in events(server) if e["t"] == "room"]) == 5


def test_a_room_changed_keeps_its_row_and_a_second_create_is_refused(node: BusState,
                                                                      server: RedisServer) -> None:
    dev = RoomRecord("dev", False, ANN, "", TS)
    assert node.save_room(dev, ANN, new=True)
    assert node.save_room(RoomRecord("dev", False, ANN, "release friday", TS), ANN)  # a topic
    assert not node.save_room(RoomRecord("dev", True, BOB, "mine", TS), BOB, new=True)  # same ms
    assert not node.save_room(RoomRecord("dev", True, BOB, "mine", LATER), BOB)  # not the room made at LATER
    loaded = node.load(10)
    assert loaded.rooms == [RoomRecord("dev", False, ANN, "release friday", TS)]
    assert [(e["t"], e["row"][3], e["by"]) for _, e in events(server)] == [("room", "", ANN),
                                                                            ("room", "release friday", ANN)]
    with server.client() as client:
        assert json.loads(client.hget(ROOMS, "dev"))[3] == "release friday"


def test_a_password_is_changed_only_for_the_account_that_is_there(node: BusState) -> None:
    vault = Vault(new_key())
    row = account_row(vault, "Ann")
    assert not node.set_password([*row[:2], "$new", *row[3:]])  # never registered
    assert node.add_account(row)
    assert not node.add_account(account_row(vault, "ANN", LATER))  # the blind index folds case
    assert node.set_password([*row[:2], "$new", *row[3:]])
    assert node.load(10).accounts == [[*row[:2], "$new", *row[3:]]]
    node.remove_accounts([(row[0], vault.account_id(row[0], row[4]))])
    assert not node.set_password([*row[:2], "$newer", *row[3:]])  # removed meanwhile
    again = account_row(vault, "Ann", LATER)  # the name registered again: another account
    assert node.add_account(again)
    assert not node.set_password([*row[:2], "$newer", *row[3:]])  # the old one's row is not its
    assert node.load(10).accounts == [again]


def test_load_reads_back_every_change_and_the_fanout_end(node: BusState, server: RedisServer) -> None:
    vault = Vault(new_key())
    ann_row = account_row(vault, "Ann")
    node.add_account(ann_row)
    node.save_room(RoomRecord("dev", True, ANN, "t", TS), ANN, new=True)
    node.save_room(RoomRecord(GENERAL, False, None, "welcome", ""), "")
    node.save_membership("dev", ANN, True)
    node.save_membership("dev", BOB, True)
    node.save_membership("dev", BOB, False)
    pair = conversation(ANN, BOB)
    node.save_markers({("dev", ANN): 2, (pair, BOB): 1})
    ban = Restriction("ban", BOB, "", "spam")
    mute = Restriction("mute", ANN, "2026-12-06T10:00:00.000Z")
    node.save_restriction(ban, lifted=False)
    node.save_restriction(mute, lifted=False)
    node.save_restriction(ban, lifted=True)
    with server.client() as client:
        publisher = Publisher(client)
        for n in range(1, 6):
            publisher.publish(Publish(GENERAL, room_body(TS, "Ann", f"m{n}")))
        publisher.publish(Publish("dev", room_body(TS, "Ann", "d")))
        end = client.xrevrange(FANOUT, count=1)[0][0]
    node.delete_message(GENERAL, 5)
    loaded = node.load(3)
    assert loaded.accounts == [ann_row]
    assert loaded.rooms == [RoomRecord("dev", True, ANN, "t", TS)]
    assert loaded.general_topic == "welcome"
    assert loaded.members == {"dev": {ANN}}
    assert loaded.markers == {("dev", ANN): 2, (pair, BOB): 1}
    assert loaded.restrictions == [mute]
    assert loaded.seqs == {GENERAL: 5, "dev": 1}
    assert general_records(loaded.general) == [Record(n, TS, "Ann", f"m{n}") for n in (2, 3, 4)]
    assert loaded.fanout_end > end  # the deletion's event came after the last message
    with server.client() as client:
        assert loaded.fanout_end == client.xrevrange(FANOUT, count=1)[0][0]
    with server.client() as client:
        assert Publisher(client).read_fanout(loaded.fanout_end, 10) == []  # nothing falls between


def test_every_change_is_in_the_fanout_stream_with_its_node_in_order(server: RedisServer) -> None:
    vault = Vault(new_key())
    row = account_row(vault, "Ann")
    with server.client() as one_client, server.client() as two_client:
        one, two = BusState(one_client, "one"), BusState(two_client, "two")
        one.add_account(row)
        two.save_membership("dev", ANN, True)
        one.save_markers({("dev", ANN): 4})
        two.save_restriction(Restriction("mute", ANN, ""), lifted=False)
        Publisher(one_client).publish(Publish("dev", room_body(TS, "Ann", "x")))
        assert one.delete_message("dev", 1)
        assert not two.delete_message("dev", 1)  # deleted meanwhile
        one.announce("notice", "maintenance at ten")
        one.remove_accounts([(row[0], ANN)])
    assert events(server) == [
        ("one", {"t": "account", "row": row}),
        ("two", {"t": "member", "room": "dev", "id": ANN, "member": True}),
        ("one", {"t": "marker", "k": key_text("dev"), "id": ANN, "seq": 4}),
        ("two", {"t": "restriction", "row": ["mute", ANN, "", ""], "lifted": False}),
        ("one", {"t": "deleted", "k": "r:dev", "seq": 1}),
        ("two", {"t": "deleted", "k": "r:dev", "seq": 1}),
        ("one", {"t": "notice", "text": "maintenance at ten", "id": ""}),
        ("one", {"t": "removed", "id": ANN}),
    ]


def test_a_marker_never_goes_back_in_the_bus(server: RedisServer) -> None:
    with server.client() as one_client, server.client() as two_client:
        one, two = BusState(one_client, "one"), BusState(two_client, "two")
        one.save_markers({("dev", ANN): 5})
        two.save_markers({("dev", ANN): 3})  # node two had not heard of 5 yet
        assert one.load(1).markers == {("dev", ANN): 5}


def test_the_key_check_accepts_the_buses_key_only(node: BusState, server: RedisServer) -> None:
    key = new_key()
    node.check_key(Vault(key))  # the first node: the bus takes its key
    node.check_key(Vault(key))
    with server.client() as client:
        BusState(client, "two").check_key(Vault(key))
        with pytest.raises(KeyMismatch):
            BusState(client, "three").check_key(Vault(new_key()))
        for stored in ("not a token", Vault(key).encrypt("another constant", "bus")):
            client.set(KEY_CHECK, stored)
            with pytest.raises(KeyMismatch):
                BusState(client, "four").check_key(Vault(key))
