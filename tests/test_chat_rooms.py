"""Version 2 of PROTOCOL.md in the core, sans-IO: negotiation, rooms, direct messages, markers.

`Chat` driven through the recording Effects (tests/chat_fakes.py), whose `received` holds what
each session would read: its private frames and the broadcasts of the rooms it reads, in order.
"""

from __future__ import annotations

import pytest
from chat_fakes import CHEAP, PASSWORD, MemoryAccounts, MemoryJournal, Recorder

from netlab import wire as p
from netlab.chat.jobs import ReadPage, SaveMembership, SaveRoom
from netlab.chat_core import Chat, ChatConfig
from netlab.store.history import History
from netlab.store.records import Record
from netlab.store.room_records import RoomRecord, RoomsSnapshot, conversation

TS = "2026-12-04T10:00:00.000Z"


class World:
    """A chat, its fake loop and accounts, and what each session has read so far."""

    def __init__(self, tmp_path, snapshot: RoomsSnapshot | None = None, accounts=None, **limits) -> None:
        self.accounts = accounts or MemoryAccounts()
        self.history = History.open(tmp_path / "history.csv")
        self.fx = Recorder(self.history, self.accounts)
        self.chat = Chat(ChatConfig(**{"rate_limit": 0, **limits}), self.accounts, self.fx, self.fx, snapshot)
        self.chat.advance(1000.0, 1_800_000_000.0)
        self.read: dict[int, int] = {}

    def account(self, name: str):
        return self.accounts.get(name) or self.accounts.add(name, CHEAP.hash(PASSWORD), "127.0.0.1")

    def login(self, sid: int, name: str, protocol: int | None = 2) -> list[dict]:
        self.account(name)
        self.chat.connect(sid, f"127.0.0.1:{sid}", "127.0.0.1", 0.0)
        frame = {"type": "login", "username": name, "password": PASSWORD}
        if protocol is not None:
            frame["protocol"] = protocol
        self.chat.receive(sid, frame)
        answer = self.new(sid)[1:]  # after the welcome
        for other in self.fx.received:
            self.new(other)  # the others' `join`: presence, as in version 1
        return answer

    def send(self, sid: int, kind: str, **members) -> list[dict]:
        self.chat.receive(sid, {"type": kind, **members})
        return self.new(sid)

    def new(self, sid: int) -> list[dict]:
        """What session `sid` read since the last look."""
        frames = self.fx.received.get(sid, [])
        start, self.read[sid] = self.read.get(sid, 0), len(frames)
        return frames[start:]

    def quiet(self, *sids: int) -> None:
        for sid in sids:
            assert self.new(sid) == [], f"session {sid} was told something"


@pytest.fixture
def world(tmp_path):
    return lambda **limits: World(tmp_path, **limits)


def error(code: str, rid: str | None = None) -> dict:
    """An error frame as compared here: without its human text."""
    return {"type": "error", "code": code, **({"id": rid} if rid else {})}


def plain(frames: list[dict]) -> list[dict]:
    return [{k: v for k, v in f.items() if not (f["type"] == "error" and k == "message")} for f in frames]


# -- negotiation ---------------------------------------------------------------------------


def test_welcome_offers_both_versions_and_ok_says_the_sessions(world):
    w = world()
    w.chat.connect(1, "127.0.0.1:1", "127.0.0.1", 0.0)
    assert w.new(1) == [{"type": "welcome", "server": "netlab", "protocol": 1, "max_frame": 65536,
                         "versions": [1, 2]}]
    w.account("Ann")
    w.send(1, "login", username="ann", password=PASSWORD, protocol=2)
    assert [f["type"] for f in w.fx.received[1]] == ["welcome", "ok", "history", "users", "rooms"]
    ok, history, users, rooms = w.fx.received[1][1:]
    assert ok == {"type": "ok", "op": "login", "username": "Ann", "protocol": 2}
    assert history == {"type": "history", "room": "general", "messages": [], "more": False}
    assert users == {"type": "users", "room": "general", "online": ["Ann"], "count": 1, "more": False}
    assert rooms == {"type": "rooms", "conversations": [], "more": False, "rooms": [
        {"room": "general", "topic": "", "private": False, "members": 1, "last_seq": 0, "read_seq": 0,
         "member": True}]}
    v1 = w.login(2, "Bob", protocol=None)
    assert v1[0] == {"type": "ok", "op": "login", "username": "Bob", "protocol": 1}
    assert [f["type"] for f in v1] == ["ok", "history", "users"] and "room" not in v1[1]


@pytest.mark.parametrize("protocol", [2.0, "2", True, None, 3, 0, [2]])
def test_protocol_must_be_the_integer_1_or_2(world, protocol):
    w = world()
    w.account("Ann")
    w.chat.connect(1, "127.0.0.1:1", "127.0.0.1", 0.0)
    w.new(1)
    got = w.send(1, "login", username="Ann", password=PASSWORD, protocol=protocol, id="l")
    assert plain(got) == [error("bad_request", "l")]
    got = w.send(1, "register", username="Neu", password=PASSWORD, protocol=protocol)
    assert plain(got) == [error("bad_request")]


def test_version_2_types_are_unknown_before_login_and_to_version_1(world):
    w = world()
    w.chat.connect(1, "127.0.0.1:1", "127.0.0.1", 0.0)
    w.new(1)
    for kind in ("rooms", "create", "join", "leave", "invite", "topic", "read", "delete", "password"):
        assert plain(w.send(1, kind, room="dev", id="k")) == [error("unknown_type", "k")]
    w.login(2, "Ann", protocol=1)
    for kind in ("rooms", "create", "join", "read", "password"):
        assert plain(w.send(2, kind, room="dev", seq=0, id="k")) == [error("unknown_type", "k")]


def test_version_1_say_never_leaves_general_and_its_pages_ignore_room_and_with(world):
    w = world()
    w.login(1, "Ann", protocol=1)
    assert plain(w.send(1, "say", text="hi", to="Ann", id="a")) == [error("bad_request", "a")]
    assert plain(w.send(1, "say", text="hi", room="dev", id="b")) == [error("bad_request", "b")]
    assert plain(w.send(1, "say", text="hi", room=7, id="c")) == [error("bad_request", "c")]
    said = w.send(1, "say", text="hi", room="general")
    assert said == [{"type": "message", "seq": 1, "ts": said[0]["ts"], "from": "Ann", "text": "hi",
                     "room": "general"}]
    assert w.fx.persisted[-1].text == "hi"
    assert w.send(1, "history", room="Not A Room", **{"with": 5}) == [
        {"type": "history", "messages": [{"seq": 1, "ts": said[0]["ts"], "from": "Ann", "text": "hi"}],
         "more": False}]
    users = w.send(1, "users", room="nope")
    assert users == [{"type": "users", "online": ["Ann"], "count": 1, "more": False}]


def test_general_message_is_one_frame_for_version_1_and_2_sessions_of_one_account(world):
    w = world()
    w.login(1, "Ann", protocol=1)
    w.login(2, "Ann", protocol=2)
    w.send(2, "say", text="from v2", id="x")
    first = w.new(1)
    assert first == w.fx.received[2][-1:] and first[0]["room"] == "general" and first[0]["id"] == "x"
    assert [f["type"] for f in w.fx.broadcasts] == ["join", "message"]  # general's log, encoded once


# -- rooms -------------------------------------------------------------------------------------


def make_room(w: World, sid: int, name: str, **members) -> dict:
    got = w.send(sid, "create", room=name, **members)
    assert got[-1]["type"] == "joined", got
    return got[-1]


def test_create_answers_joined_once_on_disk_and_the_name_is_taken(world):
    w = world()
    w.login(1, "Ann")
    w.login(2, "Ann")  # another device: gets `joined` too
    w.new(1)
    assert make_room(w, 1, "dev", topic="the code") == {
        "type": "joined", "room": "dev", "topic": "the code", "private": False, "owner": "Ann",
        "members": 1, "last_seq": 0, "read_seq": 0}
    assert w.new(2)[-1]["room"] == "dev"
    ann = w.accounts.get("Ann").id
    assert [type(j) for j in w.fx.saved] == [SaveRoom, SaveMembership]
    assert w.fx.saved[0].room.owner == ann and w.fx.saved[1] == SaveMembership("dev", ann, True)
    for name in ("dev", "general"):
        assert plain(w.send(1, "create", room=name, id="c")) == [error("room_exists", "c")]
    for bad in ("Dev", "-dev", "_x", "a" * 33, "", "d ev", "dév"):
        assert plain(w.send(1, "create", room=bad)) == [error("invalid_room")]
    assert plain(w.send(1, "create", room="x", topic="t" * 401)) == [error("bad_request")]
    assert plain(w.send(1, "create", room="x", private="yes")) == [error("bad_request")]


def ann_makes_dev(w: World, *others: tuple[int, str, int]) -> None:
    """Ann (session 1) creates dev; then `others` (sid, name, protocol) log in."""
    w.login(1, "Ann")
    make_room(w, 1, "dev")
    for sid, name, protocol in others:
        w.login(sid, name, protocol)


def test_join_sends_joined_then_member_to_the_others_only(world):
    w = world()
    ann_makes_dev(w, (2, "Bob", 2), (3, "Bob", 1))
    got = w.send(2, "join", room="dev")
    assert got == [{"type": "joined", "room": "dev", "topic": "", "private": False, "owner": "Ann",
                    "members": 2, "last_seq": 0, "read_seq": 0}]
    assert w.new(1) == [{"type": "member", "room": "dev", "username": "Bob", "change": "joined"}]
    w.quiet(3)  # version 1: never a frame about another room
    assert w.send(2, "join", room="dev")[0]["type"] == "joined"  # already in: joined again, nothing else
    w.quiet(1)
    general = w.send(2, "join", room="general")[0]
    assert general == {"type": "joined", "room": "general", "topic": "", "private": False, "owner": None,
                       "members": 2, "last_seq": 0, "read_seq": 0}


def test_room_messages_reach_its_members_version_2_sessions_only_with_their_own_seq(world):
    w = world()
    ann_makes_dev(w, (2, "Bob", 2), (3, "Ann", 1), (4, "Ann", 2))  # 4 reads dev from its login on
    w.send(1, "say", text="general one")
    for sid in (2, 3, 4):
        w.new(sid)
    before = len(w.fx.room_broadcasts)
    said = w.send(1, "say", text="dev one", room="dev", id="d1")
    assert said == [{"type": "message", "seq": 1, "ts": said[0]["ts"], "from": "Ann", "text": "dev one",
                     "id": "d1", "room": "dev"}]
    assert w.new(4) == said
    assert len(w.fx.room_broadcasts) == before + 1  # encoded and logged once, whoever reads it
    w.quiet(2, 3)
    assert w.send(1, "say", text="dev two", room="dev")[0]["seq"] == 2
    assert w.send(1, "say", text="general two")[0]["seq"] == 2
    assert w.send(1, "history", room="dev", after=0) == [
        {"type": "history", "room": "dev", "messages": [
            {"seq": 1, "ts": said[0]["ts"], "from": "Ann", "text": "dev one"},
            {"seq": 2, "ts": said[0]["ts"], "from": "Ann", "text": "dev two"}], "more": False}]


def test_a_private_room_answers_a_stranger_exactly_as_a_missing_one(world):
    w = world()
    w.login(1, "Ann")
    make_room(w, 1, "secret", private=True)
    make_room(w, 1, "open")
    w.login(2, "Eve")
    requests = [("say", {"text": "hi"}), ("history", {}), ("users", {}), ("join", {}), ("leave", {}),
                ("invite", {"username": "Eve"}), ("topic", {"text": "t"}), ("read", {"seq": 0}),
                ("delete", {"seq": 1})]
    for kind, members in requests:
        hidden = w.send(2, kind, room="secret", id="q", **members)
        missing = w.send(2, kind, room="nowhere", id="q", **members)
        assert hidden == missing and plain(hidden) == [error("no_such_room", "q")], kind
        if kind != "join":
            assert plain(w.send(2, kind, room="open", id="q", **members)) == [error("not_member", "q")], kind
    listed = w.send(2, "rooms", all=True)[0]["rooms"]
    assert [r["room"] for r in listed] == ["general", "open"]
    assert [r["member"] for r in listed] == [True, False]
    assert plain(w.send(2, "create", room="secret")) == [error("room_exists")]  # the one tell, by contract
    w.quiet(1)


def ann_and_bob_in_dev(w: World, *others: tuple[int, str]) -> None:
    """Ann (session 1) creates dev, Bob (session 2) joins it; `others` log in between."""
    ann_makes_dev(w, (2, "Bob", 2), *((sid, name, 2) for sid, name in others))
    w.send(2, "join", room="dev")
    for sid in w.fx.received:
        w.new(sid)


def test_leave_sends_left_then_member_and_stops_the_rooms_traffic(world):
    w = world()
    ann_and_bob_in_dev(w, (3, "Bob"))
    assert w.send(2, "leave", room="dev") == [{"type": "left", "room": "dev"}]
    assert w.new(3) == [{"type": "left", "room": "dev"}]
    assert w.new(1) == [{"type": "member", "room": "dev", "username": "Bob", "change": "left"}]
    w.send(1, "say", text="after", room="dev")
    w.quiet(2, 3)
    assert plain(w.send(2, "leave", room="general", id="g")) == [error("forbidden", "g")]
    assert plain(w.send(2, "leave", room="dev")) == [error("not_member")]


def test_invite_answers_ok_then_the_invitee_joins_and_the_members_hear_of_it(world):
    w = world()
    w.login(1, "Ann")
    make_room(w, 1, "secret", private=True)
    w.login(2, "Bob")
    w.account("Cy")  # offline: a member from its next login
    got = w.send(1, "invite", room="secret", username="BOB", id="i")
    assert got == [{"type": "ok", "op": "invite", "username": "Ann", "protocol": 2},
                   {"type": "member", "room": "secret", "username": "Bob", "change": "joined"}]
    assert w.new(2) == [{"type": "joined", "room": "secret", "topic": "", "private": True, "owner": "Ann",
                         "members": 2, "last_seq": 0, "read_seq": 0}]
    assert w.send(1, "invite", room="secret", username="bob") == [
        {"type": "ok", "op": "invite", "username": "Ann", "protocol": 2}]
    w.quiet(2)
    nobody = w.send(1, "invite", room="secret", username="nobody", id="n")
    assert plain(nobody) == [error("no_such_user", "n")]
    assert plain(w.send(1, "invite", room="secret", username="a b")) == [error("no_such_user")]
    w.send(2, "invite", room="secret", username="cy")  # any member may invite
    w.send(1, "say", text="welcome", room="secret")
    rooms = w.login(3, "Cy")[-1]["rooms"]
    assert [(r["room"], r["last_seq"]) for r in rooms] == [("general", 0), ("secret", 1)]
    w.send(1, "say", text="again", room="secret")
    assert w.new(3)[0]["text"] == "again"


def test_only_the_owner_sets_a_topic_and_general_is_the_operators(world):
    w = world()
    w.login(1, "Ann")
    make_room(w, 1, "dev")
    w.login(2, "Bob")
    w.login(3, "Bob", protocol=1)
    w.send(2, "join", room="dev")
    w.new(1)
    assert w.send(1, "topic", room="dev", text="release friday") == [
        {"type": "topic", "room": "dev", "text": "release friday", "by": "Ann"}]
    assert w.new(2) == [{"type": "topic", "room": "dev", "text": "release friday", "by": "Ann"}]
    assert plain(w.send(2, "topic", room="dev", text="mine", id="t")) == [error("forbidden", "t")]
    assert plain(w.send(1, "topic", room="general", text="mine")) == [error("forbidden")]
    for bad in ("x" * 401, "bell\x07", 7):
        assert plain(w.send(1, "topic", room="dev", text=bad)) == [error("bad_request")]
    assert w.send(1, "topic", room="dev", text="")[0]["text"] == ""  # 0 characters: no topic
    w.send(1, "topic", room="dev", text="release friday")
    w.new(2)
    w.chat.set_topic("general", "welcome all")
    topic = {"type": "topic", "room": "general", "text": "welcome all", "by": "operator"}
    assert w.new(1) == [topic] and w.new(2) == [topic]
    w.quiet(3)
    assert not [f for f in w.fx.broadcasts if f["type"] == "topic"]  # general's log: version 1 only
    assert w.send(1, "join", room="general")[0]["topic"] == "welcome all"
    with pytest.raises(ValueError, match="no such room"):
        w.chat.set_topic("nowhere", "x")


def test_rooms_lists_memberships_public_rooms_with_all_and_pages_by_name(world):
    w = world(max_frame=p.MIN_MAX_FRAME, room_rate=0)
    w.login(1, "Ann")
    names = [f"room-{n:03d}-{'x' * 20}" for n in range(99)]
    for name in names:
        make_room(w, 1, name, topic="t" * 100)
    w.login(2, "Bob")
    w.send(2, "say", text="hi", to="Ann")
    w.new(1)
    first = w.send(1, "rooms")[0]
    assert first["more"] is True and len(p.encode_payload(first)) <= p.MIN_MAX_FRAME
    assert first["conversations"] == [{"with": "Bob", "last_seq": 1, "read_seq": 0}]
    seen = [r["room"] for r in first["rooms"]]
    while True:
        page = w.send(1, "rooms", after=seen[-1])[0]
        assert page["conversations"] == []
        seen += [r["room"] for r in page["rooms"]]
        if not page["more"]:
            break
    assert seen == sorted(["general", *names])
    assert [r["room"] for r in w.send(2, "rooms")[0]["rooms"]] == ["general"]
    everything = w.send(2, "rooms", all=True, after="room-097")[0]["rooms"]
    assert [(r["room"], r["member"]) for r in everything] == [(names[97], False), (names[98], False)]


def test_users_of_a_room_lists_its_online_members(world):
    w = world()
    ann_and_bob_in_dev(w, (3, "Cy"))
    assert w.send(1, "users", room="dev") == [
        {"type": "users", "room": "dev", "online": ["Ann", "Bob"], "count": 2, "more": False}]
    w.chat.disconnect(2, "closed")
    assert w.new(1) == [{"type": "leave", "username": "Bob"}]
    assert w.send(1, "users", room="dev", after="ann")[0]["online"] == []
    assert w.send(1, "users")[0] == {"type": "users", "room": "general", "online": ["Ann", "Cy"],
                                     "count": 2, "more": False}


# -- direct messages --------------------------------------------------------------------------


def test_a_direct_message_reaches_both_accounts_version_2_sessions(world):
    w = world()
    w.login(1, "Ann")
    w.login(2, "Ann")
    w.login(3, "Bob")
    w.login(4, "Bob", protocol=1)
    w.login(5, "Cy")
    for sid in (1, 2):
        w.new(sid)
    said = w.send(1, "say", text="psst", to="BOB", id="m")
    frame = {"type": "message", "seq": 1, "ts": said[0]["ts"], "from": "Ann", "text": "psst", "id": "m",
             "to": "Bob"}
    assert said == [frame] and w.new(2) == [frame] and w.new(3) == [frame]
    w.quiet(4, 5)
    assert w.send(3, "say", text="hi back", to="ann")[0]["seq"] == 2
    w.new(1)
    assert plain(w.send(1, "say", text="x", to="nobody", id="n")) == [error("no_such_user", "n")]
    assert plain(w.send(1, "say", text="x", to="Bob", room="dev")) == [error("bad_request")]
    page = w.send(3, "history", **{"with": "ann"})[0]
    assert page["with"] == "Ann" and [m["text"] for m in page["messages"]] == ["psst", "hi back"]
    assert w.send(5, "history", **{"with": "Ann"}) == [
        {"type": "history", "with": "Ann", "messages": [], "more": False}]
    assert w.send(5, "rooms")[0]["conversations"] == []
    assert w.send(1, "rooms")[0]["conversations"] == [{"with": "Bob", "last_seq": 2, "read_seq": 0}]
    pair = conversation(w.accounts.get("Ann").id, w.accounts.get("Bob").id)
    assert [r.text for r in w.fx.journal(pair).records] == ["psst", "hi back"]
    assert not w.fx.room_broadcasts and {f["type"] for f in w.fx.broadcasts} == {"join"}  # in no room's log


def test_conversations_per_account_are_bounded(world):
    w = world(max_conversations=2)
    w.login(1, "Ann")
    for name in ("Bob", "Cy", "Di"):
        w.account(name)
    w.send(1, "say", text="1", to="Bob")
    w.send(1, "say", text="2", to="Cy")
    assert plain(w.send(1, "say", text="3", to="Di", id="d")) == [error("forbidden", "d")]
    assert w.send(1, "say", text="4", to="Bob")[0]["seq"] == 2  # an old one goes on


# -- idempotency ------------------------------------------------------------------------------


def test_a_say_sent_again_with_its_id_is_not_stored_again(world):
    w = world()
    w.login(1, "Ann")
    w.login(2, "Ann")
    make_room(w, 1, "dev")
    w.new(2)
    first = w.send(1, "say", text="once", room="dev", id="k1")
    w.new(2)
    assert w.send(1, "say", text="once", room="dev", id="k1") == first  # the first one's message again
    w.quiet(2)
    assert w.fx.journal("dev").last_seq == 1
    assert w.send(1, "say", text="once", id="k1")[0]["seq"] == 1  # general is another room: stored
    assert w.send(1, "say", text="dm", to="Ann", id="k1")[0]["to"] == "Ann"
    again = w.send(2, "say", text="dm", to="Ann", id="k1")
    assert again[0]["seq"] == 1 and w.new(1) == []


def test_version_1_ids_are_no_idempotency_keys(world):
    w = world()
    w.login(1, "Ann", protocol=1)
    w.send(1, "say", text="a", id="same")
    w.send(1, "say", text="b", id="same")
    assert [r.text for r in w.fx.persisted] == ["a", "b"]


def test_an_id_is_remembered_for_the_rooms_last_thousand_messages(world):
    w = world()
    w.login(1, "Ann")
    w.send(1, "say", text="first", id="old")
    for n in range(999):
        w.send(1, "say", text=f"m{n}")
    assert w.send(1, "say", text="first", id="old")[0]["seq"] == 1
    w.send(1, "say", text="one more")
    assert w.send(1, "say", text="first", id="old")[0]["seq"] == 1002


def test_a_deleted_messages_id_answers_deleted(world):
    w = world()
    w.login(1, "Ann")
    w.send(1, "say", text="oops", id="k")
    w.send(1, "delete", seq=1)
    assert w.send(1, "say", text="oops", id="k") == [{"type": "deleted", "seq": 1, "room": "general"}]


# -- read markers ---------------------------------------------------------------------------------


def test_read_markers_move_forward_and_reach_the_accounts_other_sessions(world):
    w = world()
    w.login(1, "Ann")
    w.login(2, "Ann")
    w.login(3, "Ann", protocol=1)
    w.login(4, "Bob")
    for n in range(3):
        w.send(1, "say", text=f"m{n}")
    w.send(4, "say", text="dm", to="Ann")
    for sid in (1, 2, 3, 4):
        w.new(sid)
    assert w.send(1, "read", seq=2, room="general") == []
    assert w.new(2) == [{"type": "read", "seq": 2, "room": "general"}]
    w.quiet(3, 4)
    assert w.send(1, "read", seq=1, room="general") == [] and w.new(2) == []  # backwards: ignored
    assert w.send(1, "read", seq=1, **{"with": "bob"}) == []
    assert w.new(2) == [{"type": "read", "seq": 1, "with": "Bob"}]
    assert plain(w.send(1, "read", seq=4, room="general")) == [error("bad_request")]  # past last_seq
    assert plain(w.send(1, "read", seq=2, **{"with": "bob"})) == [error("bad_request")]
    assert plain(w.send(1, "read", seq=1)) == [error("bad_request")]  # neither room nor with
    assert plain(w.send(1, "read", seq=1, room="general", **{"with": "Bob"})) == [error("bad_request")]
    ann, bob = w.accounts.get("Ann").id, w.accounts.get("Bob").id
    assert w.fx.marks == [("general", ann, 2), (conversation(ann, bob), ann, 1)]
    rooms = w.send(2, "rooms")[0]
    assert rooms["rooms"][0]["read_seq"] == 2 and rooms["conversations"][0]["read_seq"] == 1


# -- delete and password ---------------------------------------------------------------------------


def test_delete_tells_every_version_2_session_that_could_see_it(world):
    w = world()
    w.login(1, "Ann")
    w.login(2, "Bob")
    w.login(3, "Bob", protocol=1)
    make_room(w, 1, "dev")
    w.send(2, "join", room="dev")
    w.send(1, "say", text="general secret")
    w.send(1, "say", text="dev secret", room="dev")
    w.send(2, "say", text="bob's", room="dev")
    w.send(1, "say", text="dm secret", to="Bob")
    for sid in (1, 2, 3):
        w.new(sid)
    assert w.send(1, "delete", seq=1) == [{"type": "deleted", "seq": 1, "room": "general"}]
    assert w.new(2) == [{"type": "deleted", "seq": 1, "room": "general"}]
    w.quiet(3)
    assert not [f for f in w.fx.broadcasts if f["type"] == "deleted"]
    assert w.send(1, "delete", seq=1, room="dev") == [{"type": "deleted", "seq": 1, "room": "dev"}]
    assert w.new(2) == [{"type": "deleted", "seq": 1, "room": "dev"}]
    assert w.send(1, "delete", seq=1, **{"with": "Bob"}) == [{"type": "deleted", "seq": 1, "with": "Bob"}]
    assert w.new(2) == [{"type": "deleted", "seq": 1, "with": "Ann"}]
    assert plain(w.send(1, "delete", seq=2, room="dev", id="f")) == [error("forbidden", "f")]
    assert plain(w.send(1, "delete", seq=1, room="dev")) == [error("bad_request")]  # deleted already
    assert plain(w.send(1, "delete", seq=9, room="dev")) == [error("bad_request")]
    assert [m["text"] for m in w.send(2, "history", room="dev")[0]["messages"]] == ["bob's"]
    assert w.send(3, "history")[0]["messages"] == []


def test_password_changes_once_on_disk_and_a_wrong_one_counts_as_a_failed_login(world):
    w = world()
    w.login(1, "Ann")
    w.login(2, "Ann")
    assert w.send(1, "password", password=PASSWORD, new_password="new password", id="p") == [
        {"type": "ok", "op": "password", "username": "Ann", "protocol": 2}]
    w.quiet(2)  # the other sessions stay, untold
    assert plain(w.send(1, "password", password=PASSWORD, new_password="x", id="s")) == [
        error("invalid_password", "s")]
    for _ in range(5):
        assert plain(w.send(1, "password", password="wrong one", new_password="another one")) == [
            error("bad_credentials")]
    w.chat.connect(9, "10.0.0.9:1", "10.0.0.9", 0.0)
    w.new(9)
    assert plain(w.send(9, "login", username="Ann", password="new password")) == [error("rate_limited")]


# -- bounds and failures -------------------------------------------------------------------------


def test_a_change_the_disk_refuses_is_unavailable_and_rolled_back(world):
    w = world()
    w.login(1, "Ann")
    w.login(2, "Bob")
    w.fx.failing = True
    assert plain(w.send(1, "create", room="dev", id="c")) == [error("unavailable", "c")]
    w.fx.failing = False
    make_room(w, 2, "dev")  # the name was not kept
    w.fx.failing = True
    assert plain(w.send(1, "join", room="dev")) == [error("unavailable")]
    assert plain(w.send(1, "say", text="x", room="dev")) == [error("not_member")]
    w.fx.failing = False
    assert w.send(1, "join", room="dev")[0]["members"] == 2


def test_rooms_in_all_per_account_and_the_create_rate_are_bounded(world):
    w = world(max_rooms=4, max_rooms_per_account=2, room_rate=2)
    w.login(1, "Ann")
    w.login(2, "Bob")
    make_room(w, 1, "a")
    make_room(w, 1, "b")
    assert plain(w.send(1, "create", room="c")) == [error("forbidden")]  # Ann is in two
    make_room(w, 2, "c")
    assert plain(w.send(2, "create", room="d")) == [error("forbidden")]  # four rooms, general included
    w.send(2, "join", room="a")
    w.send(2, "leave", room="a")
    assert plain(w.send(2, "join", room="a")) == [error("rate_limited")]  # Bob's two this minute
    w.chat.disconnect(2, "closed")
    w.login(2, "Bob")  # a new session: the same account's bucket
    assert plain(w.send(2, "join", room="a")) == [error("rate_limited")]
    w.chat.advance(1030.0, 1_800_000_030.0)  # half a minute: one more
    assert w.send(2, "join", room="a")[0]["type"] == "joined"
    w.new(1)
    assert plain(w.send(1, "invite", room="b", username="Bob")) == [error("forbidden")]  # Bob is in two


# -- after a restart, and the operator --------------------------------------------------------------


def test_rooms_memberships_and_markers_come_back_from_the_snapshot(tmp_path):
    accounts = MemoryAccounts()
    ann = accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    bob = accounts.add("Bob", CHEAP.hash(PASSWORD), "127.0.0.1")
    snapshot = RoomsSnapshot(rooms={"dev": RoomRecord("dev", True, ann.id, "code", TS)},
                             members={"dev": {ann.id, bob.id}}, markers={("dev", bob.id): 0},
                             conversations={conversation(ann.id, bob.id)}, general_topic="hello")
    w = World(tmp_path, snapshot, accounts)
    rooms = w.login(2, "Bob")[-1]
    assert rooms["rooms"] == [
        {"room": "dev", "topic": "code", "private": True, "members": 2, "last_seq": 0, "read_seq": 0,
         "member": True},
        {"room": "general", "topic": "hello", "private": False, "members": 2, "last_seq": 0, "read_seq": 0,
         "member": True}]
    w.login(1, "Ann")
    w.send(1, "say", text="after restart", room="dev")
    assert w.new(2)[-1]["text"] == "after restart"
    assert w.chat.rooms_table() == [("dev", "private", "Ann", 2, 2, 1), ("general", "public", None, 2, 2, 0)]


def test_say_ids_come_back_from_the_snapshot(tmp_path):
    """A resend after a restart finds the id the store kept (RoomsSnapshot.say_ids)."""
    accounts = MemoryAccounts()
    ann = accounts.add("Ann", CHEAP.hash(PASSWORD), "127.0.0.1")
    before = History.open(tmp_path / "history.csv")
    before.append([Record(1, TS, "Ann", "sent before the stop")])
    before.close()
    w = World(tmp_path, RoomsSnapshot(say_ids={"general": [(ann.id, "g1", 1)]}), accounts)
    w.login(1, "Ann")
    w.login(2, "Bob")
    again = w.send(1, "say", text="sent before the stop", id="g1")
    assert [(m["seq"], m["id"]) for m in again] == [(1, "g1")]
    w.quiet(2)
    assert w.chat.journals.journal("general").last_seq == 1


def test_a_name_being_created_is_taken_until_its_job_ends(world):
    w = world()
    w.login(1, "Ann")
    w.login(2, "Bob")
    held = []
    w.fx.submit = lambda sid, job, done: held.append((job, done))
    w.send(1, "create", room="dev")
    assert plain(w.send(2, "create", room="dev", id="2")) == [error("room_exists", "2")]
    assert plain(w.send(2, "join", room="dev")) == [error("no_such_room")]  # not there before it is stored
    job, done = held.pop()
    done(OSError(5, "Input/output error"))
    assert plain(w.new(1)) == [error("unavailable")]
    del w.fx.submit  # the Recorder's own again
    assert make_room(w, 2, "dev")["owner"] == "Bob"


def test_a_rooms_history_beyond_its_window_is_read_off_the_loop(world):
    w = world()
    w.login(1, "Ann")
    w.fx.journals["dev"] = MemoryJournal(window=2)
    make_room(w, 1, "dev")
    for n in range(4):
        w.send(1, "say", text=f"m{n}", room="dev")
    jobs = []
    run = w.fx.submit
    w.fx.submit = lambda sid, job, done: (jobs.append(job), run(sid, job, done))
    page = w.send(1, "history", room="dev", before=3, limit=2)[0]
    assert jobs == [ReadPage(2, 3, None, "dev")]
    assert page["room"] == "dev" and [m["text"] for m in page["messages"]] == ["m0", "m1"]
