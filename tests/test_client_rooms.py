"""The chat client's session with a version 2 server (rooms, direct messages, read
markers), frame by frame: no socket, no thread, no clock. A hypothesis model of a
server checks that reconnects fill every room's and conversation's gap."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.client.effects import Credentials, Effect, Send, Show, Timer
from netlab.client.places import READ_DELAY
from netlab.client.session import ClientSession
from netlab.client.words import ERROR_SENTENCES, error_sentence

WELCOME2 = {"type": "welcome", "server": "netlab", "protocol": 1, "max_frame": 65536, "versions": [1, 2]}
WELCOME1 = {"type": "welcome", "server": "netlab", "protocol": 1, "max_frame": 65536}
TS = "2026-01-01T00:00:00.000Z"
OK2 = {"type": "ok", "op": "login", "username": "ann", "protocol": 2}


def session(start: tuple[str, str] = ("#general", "general")) -> ClientSession:
    return ClientSession(Credentials("ann", "correct horse", False), "127.0.0.1:7000", start=start)


def sent(effects: list[Effect]) -> list[dict]:
    return [effect.frame for effect in effects if isinstance(effect, Send)]


def shown(effects: list[Effect], *kinds: str) -> list[str]:
    return [effect.text for effect in effects
            if isinstance(effect, Show) and effect.kind != "frame" and (not kinds or effect.kind in kinds)]


def message(seq: int, text: str = "", sender: str = "bob", room: str | None = "general",
            to: str | None = None, rid: str | None = None) -> dict:
    frame = {"type": "message", "seq": seq, "ts": TS, "from": sender, "text": text or f"m{seq}"}
    frame |= {"to": to} if to else {"room": room}
    return frame if rid is None else {**frame, "id": rid}


def entry(room: str, last: int = 0, read: int = 0, **extra) -> dict:
    return {"room": room, "topic": "", "private": False, "members": 2, "last_seq": last, "read_seq": read,
            "member": True, **extra}


def rooms(*entries: dict, conversations: tuple = (), more: bool = False) -> dict:
    return {"type": "rooms", "rooms": list(entries), "conversations": list(conversations), "more": more}


def logged_in(client: ClientSession, *entries: dict, conversations: tuple = ()) -> list[Effect]:
    """A version 2 login: welcome, `ok`, an empty history of general, `users`, `rooms`."""
    effects = client.welcomed(WELCOME2, 0.0)
    effects += client.receive(OK2, 0.0)
    effects += client.receive({"type": "history", "room": "general", "messages": [], "more": False}, 0.0)
    effects += client.receive({"type": "users", "room": "general", "online": ["ann"], "count": 1,
                               "more": False}, 0.0)
    return effects + client.receive(rooms(entry("general"), *entries, conversations=conversations), 0.0)


def joined(room: str, last: int = 0, read: int = 0) -> dict:
    return {"type": "joined", "room": room, "topic": "", "private": False, "owner": "ann", "members": 1,
            "last_seq": last, "read_seq": read}


# -- negotiation -----------------------------------------------------------------------------------


def test_version_2_is_asked_for_when_offered_and_version_1_servers_get_no_protocol():
    client = session()
    assert sent(client.welcomed(WELCOME2, 0.0)) == [
        {"type": "login", "username": "ann", "password": "correct horse", "protocol": 2}]
    client.receive(OK2, 0.0)
    assert client.place == "#general"
    client = session()
    assert "protocol" not in sent(client.welcomed(WELCOME1, 0.0))[0]
    client.receive({"type": "ok", "op": "login", "username": "ann"}, 0.0)
    assert client.place == ""  # a version 1 prompt stays `ann>`
    assert shown(client.requests.join("dev")) == ["error: this server speaks protocol version 1 only: "
                                                  "it has no rooms or direct messages"]


def test_a_command_typed_before_the_first_login_says_to_wait_for_it():
    client = session()
    client.welcomed(WELCOME2, 0.0)
    assert shown(client.requests.join("dev")) == [
        "error: not logged in yet: try again once the prompt shows where you are"]


def test_lines_wait_for_the_login_lists_then_go_to_the_room_the_client_started_in():
    client = session(start=("#dev", "dev"))
    client.say("hello", 1)
    effects = logged_in(client, entry("dev", last=4))
    assert sent(effects)[-1] == {"type": "say", "text": "hello", "id": "c1", "room": "dev"}
    assert client.place == "#dev"


def test_a_start_room_not_joined_ends_the_session_saying_so():
    client = session(start=("#dev", "dev"))
    effects = logged_in(client)
    assert shown(effects, "fatal") == ["error: you are not in room dev (or there is no such room): "
                                       "join it first (/join dev at the prompt)"]
    assert client.status == 1
    client = session(start=("@bob", "bob"))
    client.welcomed(WELCOME1, 0.0)
    effects = client.receive({"type": "ok", "op": "login", "username": "ann"}, 0.0)
    assert "no rooms or direct messages" in shown(effects, "fatal")[0] and client.status == 1


# -- rooms, tags, unread counts and read markers ----------------------------------------------------


def test_other_rooms_are_tagged_and_counted_unread_the_current_one_moves_the_marker_once_a_burst():
    client = session()
    logged_in(client, entry("dev", last=2, read=2))
    effects = client.receive(message(3, "hi", room="dev"), 1.0)
    assert shown(effects) == ["[#dev] bob: hi"] and sent(effects) == []
    assert client.places.by_key["#dev"].unread == 1
    effects = []
    for seq in (1, 2, 3):
        effects += client.receive(message(seq), 2.0)
    assert shown(effects) == ["bob: m1", "bob: m2", "bob: m3"]
    [timer] = [effect for effect in effects if isinstance(effect, Timer)]  # one timer for the burst
    assert timer == Timer(2.0 + READ_DELAY, ("read", 0))
    assert sent(client.timer_fired(timer.name, timer.at)) == [{"type": "read", "seq": 3, "room": "general"}]
    assert client.timer_fired(timer.name, timer.at) == []  # nothing new since


def test_switching_reads_what_was_shown_and_a_read_elsewhere_lowers_the_count():
    client = session()
    logged_in(client, entry("dev", last=2, read=0), entry("ops", last=5, read=1))
    client.receive(message(3, room="dev"), 0.0)
    effects = client.requests.go("dev")
    assert shown(effects) == ["now in #dev (3 unread)"] and client.place == "#dev"
    assert sent(effects) == [{"type": "history", "after": 0, "limit": 3, "room": "dev"}]
    page = {"type": "history", "room": "dev", "messages": [message(seq, room=None) for seq in (1, 2, 3)],
            "more": False}
    effects = client.receive(page, 0.0)
    assert shown(effects, "history") == ["bob: m1", "bob: m2", "bob: m3"]
    [timer] = [e for e in effects + client.receive(message(4, room="dev"), 0.0) if isinstance(e, Timer)]
    assert sent(client.timer_fired(timer.name, 1.0)) == [{"type": "read", "seq": 4, "room": "dev"}]
    assert client.receive({"type": "read", "room": "ops", "seq": 5}, 0.0)[1:] == []
    effects = client.requests.rooms(every=False)
    assert sent(effects) == [{"type": "rooms"}]
    listed = client.receive(rooms(entry("dev", last=4, read=4), entry("ops", last=5, read=5)), 0.0)
    assert shown(listed, "rooms") == ["#dev (public, 2 members)", "#ops (public, 2 members)"]
    assert shown(client.requests.go("nope")) == [
        "error: you are not in #nope: /join it first, /rooms lists yours"]


def test_rooms_pages_are_gathered_and_shown_with_unread_counts():
    client = session()
    logged_in(client)
    client.requests.rooms(every=True)
    effects = client.receive(rooms(entry("a", last=3, read=1), more=True,
                                   conversations=({"with": "Bob", "last_seq": 2, "read_seq": 0},)), 0.0)
    assert sent(effects) == [{"type": "rooms", "after": "a", "all": True}] and shown(effects) == []
    effects = client.receive(rooms(entry("b", private=True, topic="plans"), entry("c", member=False)), 0.0)
    assert shown(effects, "rooms") == ["#a (public, 2 members): 2 unread", "#b (private, 2 members) — plans",
                                       "#c (public, 2 members, not joined)", "@Bob: 2 unread"]
    assert "#c" not in client.places.by_key


def test_join_switches_once_joined_and_leave_goes_back_to_general():
    client = session()
    logged_in(client)
    assert sent(client.requests.join("#dev")) == [{"type": "join", "room": "dev", "id": "join dev"}]
    effects = client.receive(joined("dev", last=7), 0.0)
    assert shown(effects) == ["you are in #dev (1 members)", "now in #dev (7 unread)"]
    assert sent(effects) == [{"type": "history", "after": 0, "limit": 7, "room": "dev"}]
    assert client.place == "#dev"
    assert sent(client.say("hi")) == [{"type": "say", "text": "hi", "id": "c1", "room": "dev"}]
    assert shown(client.receive(message(8, "hi", "ann", room="dev", rid="c1"), 0.0)) == ["ann: hi"]
    assert sent(client.requests.leave("")) == [{"type": "leave", "room": "dev"}]
    assert shown(client.receive({"type": "left", "room": "dev"}, 0.0)) == ["you left #dev"]
    assert client.place == "#general"
    assert shown(client.requests.join("Bad Name")) == [
        f"error: 'Bad Name': {ERROR_SENTENCES['invalid_room']}"]


def test_a_refused_join_leaves_the_user_where_they_are_when_an_invitation_comes_later():
    client = session()
    logged_in(client)
    [join] = sent(client.requests.join("lab"))
    refusal = {"type": "error", "code": "no_such_room", "message": "No such room.", "id": join["id"]}
    assert shown(client.receive(refusal, 0.0)) == [error_sentence(refusal)]
    assert shown(client.receive(joined("lab"), 0.0)) == ["you are in #lab (1 members)"]  # an invitation
    assert client.place == "#general"


def test_create_invite_topic_and_member_events():
    client = session()
    logged_in(client)
    assert sent(client.requests.join("dev", {"private": True, "topic": "plans"})) == [
        {"type": "create", "room": "dev", "id": "join dev", "private": True, "topic": "plans"}]
    client.receive(joined("dev"), 0.0)
    assert sent(client.requests.in_room({"type": "invite", "username": "bob"})) == [
        {"type": "invite", "room": "dev", "username": "bob"}]
    invited = {"type": "ok", "op": "invite", "username": "ann", "protocol": 2}
    assert shown(client.receive(invited, 0.0)) == ["invited"]
    member = {"type": "member", "room": "dev", "username": "bob", "change": "joined"}
    assert shown(client.receive(member, 0.0)) == ["[#dev] bob joined the room"]
    topic = {"type": "topic", "room": "dev", "text": "new plans", "by": "ann"}
    assert shown(client.receive(topic, 0.0)) == ["[#dev] ann set the topic: new plans"]
    client.requests.query("bob")
    assert shown(client.requests.in_room({"type": "topic", "text": "x"})) == [
        "error: that works in a room: /go ROOM first"]


# -- direct messages --------------------------------------------------------------------------------


def test_msg_sends_a_direct_message_and_query_switches_to_the_conversation():
    client = session()
    logged_in(client)
    assert sent(client.requests.message("Bob", "psst")) == [
        {"type": "say", "text": "psst", "id": "c1", "to": "Bob"}]
    effects = client.receive(message(1, "psst", "ann", to="Bob", rid="c1"), 0.0)
    assert shown(effects) == ["[@Bob] ann: psst"]
    assert client.places.by_key["@bob"].unread == 0  # one's own message is no news
    client.receive(message(2, "hey", "Bob", to="ann"), 0.0)
    assert client.places.by_key["@bob"].unread == 1
    effects = client.requests.query("bob")
    assert shown(effects) == ["now in @Bob (1 unread)"] and client.place == "@Bob"
    assert sent(effects) == [{"type": "history", "after": 1, "limit": 1, "with": "Bob"}]
    assert shown(client.receive(message(3, "there?", "Bob", to="ann"), 0.0)) == ["Bob: there?"]
    assert sent(client.requests.history(5)) == [{"type": "history", "limit": 5, "before": 1, "with": "Bob"}]


# -- deletions ---------------------------------------------------------------------------------------


def test_delete_of_ones_last_message_or_a_seq_and_deleted_marks_the_line():
    client = session()
    logged_in(client)
    assert shown(client.requests.delete(None)) == [
        "error: no message of yours is shown in #general: /delete SEQ"]
    client.say("oops")
    client.receive(message(5, "oops", "ann", rid="c1"), 0.0)
    assert sent(client.requests.delete(None)) == [{"type": "delete", "seq": 5, "room": "general"}]
    assert shown(client.receive({"type": "deleted", "room": "general", "seq": 5}, 0.0)) == [
        "(message 5 of ann deleted)"]
    assert sent(client.requests.delete(3)) == [{"type": "delete", "seq": 3, "room": "general"}]


# -- the password ----------------------------------------------------------------------------------------


def test_passwd_refused_keeps_the_session_and_a_changed_one_is_used_at_the_next_login():
    client = session()
    logged_in(client)
    assert sent(client.requests.password("wrong one", "new password")) == [
        {"type": "password", "password": "wrong one", "new_password": "new password", "id": "passwd"}]
    refused = {"type": "error", "code": "bad_credentials", "message": "no", "id": "passwd"}
    assert shown(client.receive(refused, 0.0)) == ["error: the current password is wrong; nothing changed"]
    assert client.status is None
    assert shown(client.requests.password("correct horse", "short")) == [
        f"error: {ERROR_SENTENCES['invalid_password']}"]
    client.requests.password("correct horse", "new password")
    client.receive({"type": "ok", "op": "password", "username": "ann", "protocol": 2}, 0.0)
    client.connection_lost("reset", 0.0)
    assert sent(client.welcomed(WELCOME2, 1.0))[0]["password"] == "new password"


# -- errors -------------------------------------------------------------------------------------------------


def test_every_version_2_error_code_has_a_sentence_and_bans_and_mutes_say_until_when():
    for code in ("invalid_room", "no_such_room", "room_exists", "not_member", "no_such_user", "forbidden",
                 "unavailable", "banned", "muted"):
        assert " " in ERROR_SENTENCES[code]  # words, not the code
    assert error_sentence({"code": "muted", "message": "until 2026-01-01T10:00Z"}) == (
        "error: the operator muted you: your messages are not sent (until 2026-01-01T10:00Z)")


def test_a_line_refused_as_unavailable_is_sent_again_with_its_id():
    client = session()
    logged_in(client)
    client.say("keep me")
    effects = client.receive({"type": "error", "code": "unavailable", "message": "bus", "id": "c1"}, 3.0)
    [timer] = [effect for effect in effects if isinstance(effect, Timer)]
    assert sent(client.timer_fired(timer.name, timer.at)) == [{"type": "say", "text": "keep me", "id": "c1"}]


# -- reconnects: every room's gap filled, once ---------------------------------------------------------------


def test_a_reconnect_pages_every_room_forward_from_its_last_message_and_holds_live_ones():
    client = session()
    bob = {"with": "Bob", "last_seq": 1, "read_seq": 1}
    logged_in(client, entry("dev", last=2, read=2), conversations=(bob,))
    client.say("again")  # in flight when the connection goes
    client.connection_lost("reset", 0.0)
    client.welcomed(WELCOME2, 1.0)
    client.receive(OK2, 1.0)
    client.receive({"type": "history", "room": "general", "messages": [], "more": False}, 1.0)
    assert shown(client.receive(message(5, room="dev"), 1.0)) == []  # held until dev's gap is filled
    effects = client.receive(rooms(entry("general"), entry("dev", last=5), conversations=(bob,)), 1.0)
    assert sent(effects) == [{"type": "history", "after": 2, "limit": 1000, "room": "dev"}]
    page = {"type": "history", "room": "dev", "messages": [message(3, room=None), message(4, room=None)],
            "more": True}
    effects = client.receive(page, 1.0)
    assert shown(effects) == ["[#dev] bob: m3", "[#dev] bob: m4"]
    assert sent(effects) == [{"type": "history", "after": 4, "limit": 1000, "room": "dev"}]
    effects = client.receive({"type": "history", "room": "dev", "messages": [message(5, room=None)],
                              "more": False}, 1.0)
    assert shown(effects) == ["[#dev] bob: m5"]  # the held copy is not shown again
    assert {"type": "say", "text": "again", "id": "c1"} in sent(effects)  # the same id: the server dedups


class FakeServer:
    """A version 2 server's side as far as gaps go: a log per place (general, a room, a
    conversation), frames in transit, `rooms` and `history` pages of sizes hypothesis
    draws, and live messages to a logged-in connection, which may come before the
    login's `rooms` (frames of different rooms interleave)."""

    KEYS = ("general", "dev", "Bob")

    def __init__(self, client: ClientSession, history_size: int, draw) -> None:
        self.client, self.history_size, self.draw = client, history_size, draw
        self.logs: dict[str, list[int]] = {key: [] for key in self.KEYS}
        self.transit: list[dict] = []
        self.online = False
        self.rooms_owed = False  # the login's `rooms` is yet to be sent
        self.shown: dict[str, list[int]] = {key: [] for key in self.KEYS}

    def frame_of(self, key: str, seq: int, live: bool = True) -> dict:
        if key == "Bob":
            return message(seq, sender="Bob", to="ann")
        return message(seq, room=key if live else None)

    def say(self, key: str) -> None:
        self.logs[key].append(len(self.logs[key]) + 1)
        if self.online:
            self.transit.append(self.frame_of(key, self.logs[key][-1]))

    def connect(self) -> None:
        self.handle(self.client.welcomed(WELCOME2, 0.0))

    def drop(self) -> None:
        self.transit.clear()
        self.online = self.rooms_owed = False
        self.handle(self.client.connection_lost("reset", 0.0))

    def deliver(self) -> None:
        if self.rooms_owed and (not self.transit or self.draw(st.booleans())):
            self.rooms_owed = False
            self.transit.append(self.rooms_page(None))
        if self.transit:
            self.handle(self.client.receive(self.transit.pop(0), 0.0))

    def rooms_page(self, after: str | None) -> dict:
        names = [key for key in ("dev", "general") if after is None or key > after]
        page = names[:self.draw(st.integers(1, 2))]
        # A conversation exists once it has a message.
        conversations = [] if after or not self.logs["Bob"] else [
            {"with": "Bob", "last_seq": len(self.logs["Bob"]), "read_seq": 0}]
        return rooms(*(entry(name, last=len(self.logs[name])) for name in page),
                     conversations=tuple(conversations), more=len(page) < len(names))

    def history_page(self, request: dict) -> dict:
        key = request.get("room", request.get("with", "general"))
        after = [seq for seq in self.logs[key] if seq > request["after"]]
        page = after[:self.draw(st.integers(1, 3))]
        scope = {"with": "Bob"} if key == "Bob" else {"room": key}
        return {"type": "history", **scope, "messages": [self.frame_of(key, seq, live=False) for seq in page],
                "more": len(after) > len(page)}

    def handle(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Show) and effect.kind in ("message", "history"):
                frame = effect.frame
                key = "Bob" if "to" in frame or frame.get("from") == "Bob" else "general"
                key = "dev" if effect.text.startswith("[#dev]") else key
                self.shown[key].append(frame["seq"])
            elif isinstance(effect, Send) and effect.frame["type"] == "login":
                newest = self.logs["general"][-self.history_size:]
                self.transit += [OK2, {"type": "history", "room": "general",
                                       "messages": [message(seq) for seq in newest],
                                       "more": len(self.logs["general"]) > len(newest)}]
                self.online = self.rooms_owed = True
            elif isinstance(effect, Send) and effect.frame["type"] == "rooms":
                self.transit.append(self.rooms_page(effect.frame["after"]))
            elif isinstance(effect, Send) and effect.frame["type"] == "history":
                self.transit.append(self.history_page(effect.frame))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4),
       st.lists(st.sampled_from(["general", "dev", "Bob", "deliver", "deliver", "deliver", "drop"]),
                max_size=60),
       st.data())
def test_reconnects_never_show_a_message_twice_nor_skip_one_in_any_room(history_size, steps, data):
    server = FakeServer(session(), history_size, data.draw)
    server.connect()
    while server.transit or server.rooms_owed:  # logged in, the lists through: a loss is waited out
        server.deliver()
    for step in steps:
        if step == "drop":
            server.drop()
            server.connect()
        elif step == "deliver":
            server.deliver()
        else:
            server.say(step)
    while server.transit or server.rooms_owed:
        server.deliver()
    assert server.shown == server.logs
