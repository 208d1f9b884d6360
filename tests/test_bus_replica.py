"""Another node's changes applied to this node's chat (netlab/chat/replica.py), sans-IO.

A chat driven through the recording Effects (tests/test_chat_rooms.py's World) gets events as
the node's reader hands them over (`BusNode._apply`: decoded from the fan-out entry). What
this node's sessions are told must be what they would have been told had the change been
made here; an event applied twice changes nothing and says nothing; and presence across
nodes says `join` and `leave` exactly when a user's first session anywhere begins and its
last one anywhere ends.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from chat_fakes import CHEAP, PASSWORD, MemoryAccounts
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from test_chat_rooms import World, ann_makes_dev

from netlab.bus.journals import BusJournals
from netlab.bus.names import Names
from netlab.bus.node import BusNode
from netlab.bus.publish import FanoutEvent, key_text
from netlab.bus.state import room_row, seal_marker
from netlab.chat.arrivals import arrived
from netlab.crypto import Vault, new_key
from netlab.store.records import Record
from netlab.store.room_records import GENERAL, RoomRecord, RoomsSnapshot, conversation

TS = "2026-12-05T10:00:00.000Z"


#: This node's names of conversations (bus/names.py): a conversation's events seal its pair.
NAMES = Names(Vault(new_key()))


def remote(w: World, event: dict, node: str = "two") -> None:
    """An event another node wrote, decoded and applied as this node's reader does."""
    BusNode._apply(SimpleNamespace(accounts=w.accounts, names=NAMES), w.chat, event, node)  # type: ignore[arg-type]


def member(w: World, name: str, room: str, joined: bool) -> dict:
    return {"t": "member", "room": room, "id": w.account(name).id, "member": joined}


def worlds(tmp_path: Path) -> tuple[World, World]:
    """Two chats alike: one where a change is made locally, one where it arrives as an event."""
    made = []
    for name in ("local", "replica"):
        (tmp_path / name).mkdir()
        made.append(World(tmp_path / name))
    return made[0], made[1]


def both(local: World, replica: World, sids: tuple[int, ...]) -> None:
    """What each session read is the same in both chats (and each chat's rooms agree)."""
    for sid in sids:
        assert replica.new(sid) == local.new(sid), sid
    assert replica.chat.rooms.members == local.chat.rooms.members
    assert replica.chat.rooms.online == local.chat.rooms.online


def bob_everywhere(local: World, replica: World) -> None:
    """Ann (1) makes dev; Bob logs in with version 2 (2, 4) and version 1 (3)."""
    for w in (local, replica):
        ann_makes_dev(w, (2, "Bob", 2), (3, "Bob", 1), (4, "Bob", 2))
        for sid in (1, 2, 3, 4):
            w.new(sid)


def test_a_remote_join_and_leave_are_told_as_local_ones(tmp_path):
    local, replica = worlds(tmp_path)
    bob_everywhere(local, replica)
    local.chat.receive(2, {"type": "join", "room": "dev"})
    remote(replica, member(replica, "Bob", "dev", True))
    assert replica.new(2) == local.new(2) == [{
        "type": "joined", "room": "dev", "topic": "", "private": False, "owner": "Ann", "members": 2,
        "last_seq": 0, "read_seq": 0}]
    assert replica.new(1) == local.new(1) == [{"type": "member", "room": "dev", "username": "Bob",
                                               "change": "joined"}]
    both(local, replica, (3, 4))
    assert replica.fx.room_readers["dev"] == {1, 2, 4}  # Bob's version 2 sessions read dev now
    local.chat.receive(4, {"type": "leave", "room": "dev"})
    remote(replica, member(replica, "Bob", "dev", False))
    assert replica.new(1) == local.new(1) == [{"type": "member", "room": "dev", "username": "Bob",
                                               "change": "left"}]
    both(local, replica, (2, 3, 4))
    assert replica.fx.room_readers["dev"] == {1}


def test_a_remote_join_of_a_user_online_only_elsewhere_lists_them_online_in_the_room(tmp_path):
    local, replica = worlds(tmp_path)
    for w in (local, replica):
        ann_makes_dev(w)
    local.login(2, "Bob")
    local.chat.receive(2, {"type": "join", "room": "dev"})
    replica.account("Bob")
    replica.chat.replica.online(replica.account("Bob").id, "two")  # Bob is on node two only
    remote(replica, member(replica, "Bob", "dev", True))
    for w in (local, replica):
        w.new(1)
    users = local.send(1, "users", room="dev")
    assert users[0]["online"] == ["Ann", "Bob"]
    assert replica.send(1, "users", room="dev") == users


def test_a_remote_topic_is_told_to_the_room_by_its_setter(tmp_path):
    local, replica = worlds(tmp_path)
    bob_everywhere(local, replica)
    for w in (local, replica):
        w.chat.receive(2, {"type": "join", "room": "dev"})
        for sid in (1, 2, 3, 4):
            w.new(sid)
    local.chat.receive(1, {"type": "topic", "room": "dev", "text": "release friday"})
    ann = replica.account("Ann")
    changed = RoomRecord("dev", False, ann.id, "release friday", replica.chat.rooms.records["dev"].created)
    remote(replica, {"t": "room", "row": room_row(changed), "by": ann.id})
    assert replica.new(2) == local.new(2) == [{"type": "topic", "room": "dev", "text": "release friday",
                                               "by": "Ann"}]
    both(local, replica, (1, 3, 4))
    assert replica.chat.rooms.records["dev"] == local.chat.rooms.records["dev"]
    local.chat.set_topic(GENERAL, "welcome")
    remote(replica, {"t": "room", "row": room_row(RoomRecord(GENERAL, False, None, "welcome", "")), "by": ""})
    assert replica.new(1) == local.new(1) == [{"type": "topic", "room": "general", "text": "welcome",
                                               "by": "operator"}]
    both(local, replica, (2, 3, 4))


def test_a_remote_room_is_known_here_and_silent_until_someone_joins(tmp_path):
    _, replica = worlds(tmp_path)
    replica.login(1, "Ann")
    bob = replica.account("Bob")
    remote(replica, {"t": "room", "row": room_row(RoomRecord("ops", True, bob.id, "", TS)), "by": bob.id})
    replica.quiet(1)
    assert replica.chat.rooms.records["ops"].owner == bob.id
    assert replica.send(1, "create", room="ops", id="c")[0]["code"] == "room_exists"


def test_a_remote_marker_is_told_to_every_version_2_session_of_its_account(tmp_path):
    _, w = worlds(tmp_path)
    ann_makes_dev(w, (2, "Ann", 2), (3, "Ann", 1), (4, "Bob", 2))
    for sid in (1, 2, 3, 4):
        w.new(sid)
    ann, bob = w.account("Ann"), w.account("Bob")
    remote(w, {"t": "marker", "k": key_text("dev"), "id": ann.id, "seq": 3})
    for sid in (1, 2):
        assert w.new(sid) == [{"type": "read", "seq": 3, "room": "dev"}]
    w.quiet(3, 4)
    assert w.chat.rooms.marker("dev", ann.id) == 3
    remote(w, {"t": "marker", "k": key_text("dev"), "id": ann.id, "seq": 2})  # behind: not a move
    w.quiet(1, 2)
    assert w.chat.rooms.marker("dev", ann.id) == 3
    pair = conversation(ann.id, bob.id)
    remote(w, {"t": "marker", "m": seal_marker(NAMES, pair, bob.id, 1)})  # all of it sealed
    assert w.new(4) == [{"type": "read", "seq": 1, "with": "Ann"}]
    w.quiet(1, 2, 3)


def test_a_remote_deletion_is_told_and_the_message_leaves_the_pages(tmp_path):
    _, w = worlds(tmp_path)
    ann_makes_dev(w, (2, "Bob", 1))
    for text in ("one", "two"):
        w.send(1, "say", text=text, room="dev")
        w.send(1, "say", text=text)
    w.new(2)
    remote(w, {"t": "deleted", "k": key_text("dev"), "seq": 1})
    assert w.new(1) == [{"type": "deleted", "seq": 1, "room": "dev"}]
    w.quiet(2)  # version 1 reads general only
    assert [m["seq"] for m in w.send(1, "history", room="dev")[0]["messages"]] == [2]
    remote(w, {"t": "deleted", "k": key_text(GENERAL), "seq": 2})
    assert w.new(1) == [{"type": "deleted", "seq": 2, "room": "general"}]
    assert [m["seq"] for m in w.send(2, "history")[0]["messages"]] == [1]


def test_a_remote_ban_ends_the_accounts_sessions_here_and_its_lifting_lets_it_back(tmp_path):
    _, w = worlds(tmp_path)
    ann_makes_dev(w, (2, "Bob", 2), (3, "Bob", 1))
    bob = w.account("Bob")
    row = ["ban", bob.id, "", "spam"]
    remote(w, {"t": "restriction", "row": row, "lifted": False})
    for sid in (2, 3):
        assert w.new(sid)[-1]["type"] in ("error", "kicked")
    assert sorted(w.fx.closed) == [2, 3]
    assert w.new(1)[-1] == {"type": "leave", "username": "Bob"}
    assert w.login(5, "Bob")[0]["type"] == "error"  # refused here too
    remote(w, {"t": "restriction", "row": row, "lifted": True})
    assert w.login(6, "Bob")[0]["type"] == "ok"


def test_a_room_created_on_another_node_is_told_as_one_created_here(tmp_path):
    local, replica = worlds(tmp_path)
    for w in (local, replica):
        w.login(1, "Ann")
        w.login(2, "Bob")
        w.login(3, "Ann")
        for sid in (1, 2, 3):
            w.new(sid)
    local.chat.receive(3, {"type": "create", "room": "ops", "topic": "pager"})
    ann = replica.account("Ann")
    record = RoomRecord("ops", False, ann.id, "pager", local.chat.rooms.records["ops"].created)
    remote(replica, {"t": "room", "row": room_row(record), "by": ann.id})
    remote(replica, member(replica, "Ann", "ops", True))
    assert replica.new(1) == local.new(1) == [{
        "type": "joined", "room": "ops", "topic": "pager", "private": False, "owner": "Ann", "members": 1,
        "last_seq": 0, "read_seq": 0}]
    both(local, replica, (2, 3))
    assert replica.chat.rooms.records == local.chat.rooms.records


class NodeAccounts(MemoryAccounts):
    """Accounts that forget one removed on another node, as BusAccounts do on its event."""

    def forget(self, account_id: str):
        account = self._by_id.pop(account_id, None)
        if account is not None:
            del self._by_name[account.username.lower()]
        return account


def test_an_account_removed_on_another_node_leaves_its_rooms_and_goes_offline_here(tmp_path):
    accounts = NodeAccounts()
    accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")  # an empty one is falsy: World would swap it
    w = World(tmp_path, accounts=accounts)
    ann_makes_dev(w, (2, "Bob", 2))
    bob, cy = w.account("Bob"), w.account("Cy")
    for name in ("Bob", "Cy"):
        remote(w, member(w, name, "dev", True))
        remote(w, {"t": "online", "id": w.account(name).id})
    w.new(1)
    w.new(2)
    for account in (cy, bob):  # what the removing node writes: the removal, then what follows it
        remote(w, {"t": "removed", "id": account.id})
        remote(w, {"t": "offline", "id": account.id})
        remote(w, {"t": "member", "room": "dev", "id": account.id, "member": False})
    assert w.new(1) == [{"type": "member", "room": "dev", "username": "Cy", "change": "left"},
                        {"type": "leave", "username": "Cy"},
                        {"type": "member", "room": "dev", "username": "Bob", "change": "left"},
                        {"type": "leave", "username": "Bob"}]
    assert w.new(2)[-1] == {"type": "kicked", "reason": "account removed"}
    assert w.send(1, "users", room="dev")[0]["online"] == ["Ann"]
    assert [name for name, _ in w.chat.presence.users()] == ["Ann"]
    assert w.chat.rooms.members["dev"] == {w.account("Ann").id}
    assert w.chat.presence.on_node("two") == []


# -- messages from the fan-out stream ------------------------------------------------------------


def bus_journals(w: World) -> None:
    """The chat's journals as a bus node's: messages come by `arrived`, never staged."""
    w.chat.journals = BusJournals({}, window=50, save_marks=lambda marks: None)


def test_an_arrived_message_is_delivered_as_a_local_say_once(tmp_path):
    local, bus = worlds(tmp_path)
    bus_journals(bus)
    for w in (local, bus):
        ann_makes_dev(w, (2, "Bob", 2), (3, "Bob", 1), (4, "Ann", 2))
        w.chat.receive(2, {"type": "join", "room": "dev"})
        for sid in (1, 2, 3, 4):
            w.new(sid)
    ann, bob = bus.account("Ann"), bus.account("Bob")
    said = [("dev", 1, {"text": "in dev", "room": "dev", "id": "d1"}),
            ("general", 3, {"text": "hello", "id": "v1"}),
            ("Bob", 1, {"text": "psst", "to": "Bob", "id": "m1"})]
    for place, sid, request in said:
        local.chat.receive(sid, {"type": "say", **request})
        ts = local.fx.received[sid][-1]["ts"]
        sender = "Bob" if sid == 3 else "Ann"
        key = conversation(ann.id, bob.id) if place == "Bob" else place
        account = bob.id if sid == 3 else ann.id
        for _ in range(2):  # read twice (a reader's retry): delivered once
            arrived(bus.chat.talk, key, Record(1, ts, sender, request["text"]), account, request["id"])
        both(local, bus, (1, 2, 3, 4))
    assert bus.chat.rooms.conversations(ann.id) == local.chat.rooms.conversations(ann.id) == {bob.id}
    for w in (local, bus):  # a retried say is answered with its first message, from the window
        w.chat.receive(1, {"type": "say", "text": "in dev", "room": "dev", "id": "d1"})
    both(local, bus, (1, 2, 3, 4))
    assert bus.send(1, "history", room="dev") == local.send(1, "history", room="dev")


# -- applying an event twice -----------------------------------------------------------------


def _events(w: World) -> dict[str, dict]:
    ann, bob = w.account("Ann"), w.account("Bob")
    retopic = RoomRecord("dev", False, ann.id, "new", w.chat.rooms.records["dev"].created)
    return {
        "join": member(w, "Bob", "dev", True),
        "leave": member(w, "Ann", "dev", False),
        "topic": {"t": "room", "row": room_row(retopic), "by": ann.id},
        "room": {"t": "room", "row": room_row(RoomRecord("ops", False, bob.id, "", TS)), "by": bob.id},
        "marker": {"t": "marker", "k": key_text("dev"), "id": ann.id, "seq": 1},
        "deleted": {"t": "deleted", "k": key_text("dev"), "seq": 1},
        "ban": {"t": "restriction", "row": ["ban", bob.id, "", ""], "lifted": False},
        "mute lifted": {"t": "restriction", "row": ["mute", bob.id, "", ""], "lifted": True},
        "online": {"t": "online", "id": ann.id},
        "offline": {"t": "offline", "id": ann.id},
    }


def _state(w: World) -> tuple:
    rooms, chat = w.chat.rooms, w.chat
    return (copy.deepcopy(rooms.records), copy.deepcopy(rooms.members), copy.deepcopy(rooms.markers),
            copy.deepcopy(rooms.online), sorted(chat.sessions), list(chat.presence.users()),
            chat.presence.on_node("two"), {s: len(f) for s, f in w.fx.sent.items()}, len(w.fx.broadcasts),
            len(w.fx.room_broadcasts), copy.deepcopy(w.fx.journals["dev"].deleted))


@pytest.mark.parametrize("kind", ["join", "leave", "topic", "room", "marker", "deleted", "ban", "mute lifted",
                                  "online", "offline"])
def test_an_event_applied_twice_changes_nothing_and_says_nothing_the_second_time(tmp_path, kind):
    _, w = worlds(tmp_path)
    ann_makes_dev(w, (2, "Bob", 2), (3, "Ann", 2))
    w.send(1, "say", text="one", room="dev")
    if kind == "offline":
        w.chat.replica.online(w.account("Ann").id, "two")
    event = _events(w)[kind]
    remote(w, event)
    once = _state(w)
    remote(w, event)
    assert _state(w) == once


# -- presence across nodes -----------------------------------------------------------------------


def test_reconcile_makes_a_nodes_users_exactly_those_its_hash_lists(tmp_path):
    _, w = worlds(tmp_path)
    w.login(1, "Ann")
    w.login(2, "Cy")
    ann, bob, cy = (w.account(name) for name in ("Ann", "Bob", "Cy"))
    w.chat.replica.reconcile("two", {ann.id, bob.id, cy.id})
    assert w.new(1) == [{"type": "join", "username": "Bob"}]  # Ann and Cy were online here already
    w.chat.replica.reconcile("two", {ann.id, bob.id, cy.id})
    w.quiet(1)
    w.chat.replica.reconcile("three", {bob.id})
    w.chat.replica.reconcile("two", {ann.id})
    w.quiet(1)  # Bob is still on node three; Cy still here
    assert w.chat.replica.node_gone("three") == 1
    assert w.new(1) == [{"type": "leave", "username": "Bob"}]
    w.new(2)
    w.chat.disconnect(1, "quit")
    assert w.new(2) == []  # Ann is still on node two
    assert w.chat.replica.node_gone("two") == 1
    assert w.new(2) == [{"type": "leave", "username": "Ann"}]
    assert [name for name, _ in w.chat.presence.users()] == ["Cy"]


USERS = ("Ann", "Bob", "Cy")
NODES = ("two", "three")


class PresenceAcrossNodes(RuleBasedStateMachine):
    """Local sessions and other nodes' users come and go; `join`/`leave` follow the union."""

    @initialize()
    def start(self) -> None:
        self._directory = tempfile.TemporaryDirectory()
        accounts = MemoryAccounts()
        ids = [accounts.add(name, CHEAP.hash(PASSWORD), "127.0.0.1").id for name in USERS]
        snapshot = RoomsSnapshot(rooms={"dev": RoomRecord("dev", False, ids[0], "", TS)},
                                 members={"dev": set(ids)})
        self.w = World(Path(self._directory.name), snapshot=snapshot, accounts=accounts)
        self.ids = dict(zip(USERS, ids, strict=True))
        self.local: dict[int, str] = {}  # session -> user
        self.remote: dict[str, set[str]] = {node: set() for node in NODES}  # node -> users there
        self.next_sid = 1
        self.said = 0  # general's broadcasts looked at
        self.online_before: set[str] = set()
        self.members = set(USERS)  # of dev

    def teardown(self) -> None:
        self.w.history.close()
        self._directory.cleanup()

    def online(self) -> set[str]:
        return set(self.local.values()).union(*self.remote.values())

    @rule(user=st.sampled_from(USERS))
    def login(self, user: str) -> None:
        sid, self.next_sid = self.next_sid, self.next_sid + 1
        self.w.chat.connect(sid, f"127.0.0.1:{sid}", "127.0.0.1", 0.0)
        self.w.chat.receive(sid, {"type": "login", "username": user, "password": PASSWORD, "protocol": 2})
        self.local[sid] = user

    @rule(data=st.data())
    def logout(self, data: st.DataObject) -> None:
        if self.local:
            sid = data.draw(st.sampled_from(sorted(self.local)))
            self.w.chat.disconnect(sid, "quit")
            del self.local[sid]

    @rule(user=st.sampled_from(USERS), node=st.sampled_from(NODES), online=st.booleans())
    def event(self, user: str, node: str, online: bool) -> None:
        replica = self.w.chat.replica
        (replica.online if online else replica.offline)(self.ids[user], node)
        (self.remote[node].add if online else self.remote[node].discard)(user)

    @rule(node=st.sampled_from(NODES), users=st.sets(st.sampled_from(USERS)))
    def reconcile(self, node: str, users: set[str]) -> None:
        self.w.chat.replica.reconcile(node, {self.ids[u] for u in users})
        self.remote[node] = set(users)

    @rule(user=st.sampled_from(USERS), joined=st.booleans())
    def membership(self, user: str, joined: bool) -> None:
        """Another node's join or leave of dev: the room's online members follow it."""
        remote(self.w, member(self.w, user, "dev", joined))
        (self.members.add if joined else self.members.discard)(user)

    @rule(node=st.sampled_from(NODES))
    def node_gone(self, node: str) -> None:
        assert self.w.chat.replica.node_gone(node) == len(self.remote[node])
        self.remote[node] = set()

    @invariant()
    def join_and_leave_follow_the_union(self) -> None:
        if not hasattr(self, "w"):
            return
        said = [(f["type"], f["username"]) for f in self.w.fx.broadcasts[self.said:]
                if f["type"] in ("join", "leave")]
        self.said = len(self.w.fx.broadcasts)
        now = self.online()
        expected = [("join", u) for u in now - self.online_before] + \
            [("leave", u) for u in self.online_before - now]
        assert sorted(said) == sorted(expected)
        self.online_before = now
        assert [name for name, _ in self.w.chat.presence.users()] == sorted(now)
        assert self.w.chat.rooms.online.get("dev", []) == sorted(u.lower() for u in now & self.members)
        assert self.w.chat.rooms.members["dev"] == {self.ids[u] for u in self.members}
        for node in NODES:
            assert sorted(self.w.chat.presence.on_node(node)) == sorted(self.remote[node])


TestPresenceAcrossNodes = PresenceAcrossNodes.TestCase
TestPresenceAcrossNodes.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_an_event_netlab_cannot_apply_is_skipped_and_the_next_one_applied(tmp_path, caplog):
    """Every node reads the same fan-out entry: one that raised on the loop would stop them all."""
    _, w = worlds(tmp_path)
    w.login(1, "Ann")
    w.new(1)
    node = SimpleNamespace(accounts=w.accounts, names=NAMES, id="one", _chat=w.chat)
    node._apply = functools.partial(BusNode._apply, node)
    BusNode.arrive(node, [  # type: ignore[arg-type]
        FanoutEvent(b"1-0", "two", b'{"t": "restriction", "row": ["ban"], "lifted": false}'),
        FanoutEvent(b"2-0", "two", b'{"t": "member"}'),
        FanoutEvent(b"3-0", "two", b'{"t": "notice", "text": "still here", "id": ""}'),
    ])
    assert w.new(1) == [{"type": "notice", "text": "still here"}]
    skipped = [r for r in caplog.records if "an event netlab cannot apply" in r.getMessage()]
    assert len(skipped) == 2  # the two bad events were refused, not applied in part and passed
