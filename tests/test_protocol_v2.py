"""PROTOCOL.md's "Version 2" over real sockets, sentence by sentence.

Written from the contract alone, as an outside test suite would be: one server
serves the module (flood control off), every test uses its own names (rooms
and users), and a test that needs `general` to itself starts its own server.
"""

from __future__ import annotations

import pytest
from chatclient import PASSWORD, connect, registered
from v2client import logged_in2, registered2


@pytest.fixture(scope="module")
def port(module_chat):
    return module_chat[1]


def error_of(frame: dict) -> tuple[str, str]:
    assert frame["type"] == "error", frame
    return frame["code"], frame["message"]


# -- negotiation ------------------------------------------------------------------


def test_welcome_lists_the_versions_and_stays_protocol_1(port):
    with connect(port, welcome=False) as client:
        welcome = client.recv()
    assert welcome["protocol"] == 1 and welcome["versions"] == [1, 2]


def test_ok_carries_the_version_asked_for_and_1_by_default(port):
    with registered2(port, "neg_two") as two, connect(port) as one:
        assert two.username == "neg_two"
        one.send("login", username="neg_two", password=PASSWORD)
        assert one.expect("ok", op="login")["protocol"] == 1


@pytest.mark.parametrize("version", [3, 0, 2.0, "2", True, None, [2]])
def test_a_protocol_other_than_the_integers_1_or_2_is_bad_request(port, version):
    with connect(port) as client:
        client.send("register", username="neg_bad", password=PASSWORD, protocol=version)
        client.expect_error("bad_request")
        client.send("ping", id="still")
        client.expect("pong", id="still")  # not authenticated, not closed


def test_before_login_every_version_2_type_is_unknown_type(port):
    with connect(port) as client:
        for kind in ("rooms", "create", "join", "leave", "invite", "topic", "read", "delete", "password"):
            client.send(kind, room="x", id=kind)
            client.expect_error("unknown_type", id=kind)


def test_a_version_1_session_gets_unknown_type_for_the_new_types(port):
    with registered(port, "v1_only") as one:
        one.ignore = {"join", "leave"}
        for kind in ("rooms", "create", "join", "read"):
            one.send(kind, room="v1room", id=kind)
            one.expect_error("unknown_type", id=kind)


def test_a_version_1_say_to_someone_or_another_room_is_bad_request(port):
    with registered(port, "v1_say") as one:
        one.ignore = {"join", "leave"}
        one.send("say", text="hi", to="v1_say", id="a")
        one.expect_error("bad_request", id="a")
        one.send("say", text="hi", room="elsewhere", id="b")
        one.expect_error("bad_request", id="b")
        one.expect_nothing_pending()


def test_one_account_holds_a_version_1_and_a_version_2_session(start_chat):
    _, port = start_chat("--rate-limit", "0")
    with registered2(port, "both") as two, connect(port) as one:
        one.login("both")
        one.ignore = {"join", "leave"}
        two.create("both_room")
        two.say_in("both_room", "only for version 2")
        said = two.say_in("general", "for everyone")
        got = one.expect("message", text="for everyone")
        assert got == said and said["room"] == "general"  # one and the same frame for all
        one.expect_nothing_pending()  # nothing of both_room, no joined


def test_a_version_1_history_and_users_ignore_room_and_with(start_chat):
    _, port = start_chat("--rate-limit", "0")
    with registered2(port, "hv2") as two, registered(port, "hv1") as one:
        one.ignore = {"join", "leave"}
        two.create("hvroom")
        two.say_in("hvroom", "room text")
        one.say("general text")
        page = one.history(room="hvroom", **{"with": "hv2"})
        assert [m["text"] for m in page["messages"]] == ["general text"]
        one.send("users", room="hvroom")
        assert "hv1" in one.expect("users")["online"]


# -- rooms --------------------------------------------------------------------------


def test_create_answers_joined_with_every_member(port):
    with registered2(port, "cr_owner") as owner:
        joined = owner.create("cr-room_1", topic="plans")
        assert joined == {"type": "joined", "room": "cr-room_1", "topic": "plans", "private": False,
                          "owner": "cr_owner", "members": 1, "last_seq": 0, "read_seq": 0}


@pytest.fixture(scope="module")
def namer(port):
    client = registered2(port, "bad_namer")
    yield client
    client.close()


@pytest.mark.parametrize("name", ["", "Dev", "-dev", "_dev", "a b", "x" * 33, "dév", "dev!"])
def test_a_bad_room_name_is_invalid_room(namer, name):
    namer.send("create", room=name, id="c")
    namer.expect_error("invalid_room", id="c")


def test_room_names_are_1_to_32_of_a_z_0_9_underscore_and_dash(port):
    with registered2(port, "good_namer") as c:
        for name in ("9", "z" * 32, "a-b_c9"):
            c.create(name)


def test_create_of_a_name_in_use_is_room_exists_also_for_a_private_room(port):
    with registered2(port, "ex_a") as a, registered2(port, "ex_b") as b:
        a.create("ex-secret", private=True)
        a.send("create", room="ex-secret", id="again")
        a.expect_error("room_exists", id="again")
        b.send("create", room="ex-secret", id="taken")
        b.expect_error("room_exists", id="taken")
        b.send("create", room="general", id="general")
        b.expect_error("room_exists", id="general")


def test_join_a_public_room_tells_the_other_members_not_the_joiner(port):
    with registered2(port, "jp_owner") as owner, registered2(port, "jp_guest") as guest:
        owner.create("jp-room")
        joined = guest.join("jp-room")
        assert joined["members"] == 2 and joined["owner"] == "jp_owner" and joined["private"] is False
        assert owner.wait_for("member", room="jp-room") == {
            "type": "member", "room": "jp-room", "username": "jp_guest", "change": "joined"}
        guest.expect_nothing_pending()


def test_join_again_answers_joined_and_tells_nobody(port):
    with registered2(port, "ja_owner") as owner:
        owner.create("ja-room")
        owner.join("ja-room")
        owner.expect_nothing_pending()


def test_a_private_room_is_indistinguishable_from_a_missing_one(port):
    with registered2(port, "pv_owner") as owner, registered2(port, "pv_out") as outsider:
        owner.create("pv-secret", private=True)
        owner.say_in("pv-secret", "hush")
        for name in ("pv-secret", "pv-missing"):
            answers = []
            for kind, members in (("join", {}), ("say", {"text": "x"}), ("history", {}), ("users", {}),
                                  ("leave", {}), ("invite", {"username": "pv_out"}),
                                  ("topic", {"text": "t"}), ("read", {"seq": 1}), ("delete", {"seq": 1})):
                answers.append((kind, error_of(outsider.request(kind, room=name, **members))))
            if name == "pv-secret":
                secret = answers
            else:
                assert answers == secret
        assert {code for _, (code, _) in secret} == {"no_such_room"}
        outsider.send("rooms", all=True)
        listed = outsider.expect("rooms")
        assert "pv-secret" not in [r["room"] for r in listed["rooms"]]


def test_a_public_room_one_has_not_joined_is_not_member(port):
    with registered2(port, "nm_owner") as owner, registered2(port, "nm_out") as out:
        owner.create("nm-room")
        for kind, members in (("say", {"text": "x"}), ("history", {}), ("users", {}), ("leave", {}),
                              ("topic", {"text": "t"}), ("read", {"seq": 0}), ("delete", {"seq": 1}),
                              ("invite", {"username": "nm_owner"})):
            code, _ = error_of(out.request(kind, room="nm-room", **members))
            assert code == "not_member", kind


def test_invite_makes_a_member_and_tells_its_sessions_after_the_ok(port):
    with registered2(port, "in_owner") as owner, registered2(port, "in_guest") as guest, \
            logged_in2(port, "in_guest") as guest_phone:
        owner.create("in-club", private=True)
        owner.send("invite", room="in-club", username="IN_GUEST", id="inv")
        owner.expect("ok", op="invite")
        for session in (guest, guest_phone):
            joined = session.wait_for("joined", room="in-club")
            assert joined["private"] is True and joined["members"] == 2
        assert owner.wait_for("member", room="in-club")["username"] == "in_guest"
        owner.send("invite", room="in-club", username="in_guest", id="again")
        owner.expect("ok", op="invite")
        owner.expect_nothing_pending()
        guest.expect_nothing_pending()


def test_invite_of_no_such_account_is_no_such_user(port):
    with registered2(port, "nu_owner") as owner:
        owner.create("nu-room")
        code, _ = error_of(owner.request("invite", room="nu-room", username="nobody_at_all"))
        assert code == "no_such_user"


def test_leave_answers_left_to_every_session_and_tells_the_others(port):
    with registered2(port, "lv_owner") as owner, registered2(port, "lv_guest") as guest, \
            logged_in2(port, "lv_guest") as guest2:
        owner.create("lv-room")
        guest.join("lv-room")
        guest2.wait_for("joined", room="lv-room")
        guest.send("leave", room="lv-room")
        assert guest.expect("left") == {"type": "left", "room": "lv-room"}
        guest2.wait_for("left", room="lv-room")
        assert owner.wait_for("member", room="lv-room", change="left")["username"] == "lv_guest"
        owner.say_in("lv-room", "after you left")
        guest.expect_nothing_pending()


def test_nobody_leaves_general(port):
    with registered2(port, "lg") as c:
        code, _ = error_of(c.request("leave", room="general"))
        assert code == "forbidden"


def test_topic_only_by_the_owner_and_never_general(port):
    with registered2(port, "tp_owner") as owner, registered2(port, "tp_guest") as guest:
        owner.create("tp-room")
        guest.join("tp-room")
        owner.send("topic", room="tp-room", text="new plans")
        frame = {"type": "topic", "room": "tp-room", "text": "new plans", "by": "tp_owner"}
        assert owner.wait_for("topic") == frame and guest.wait_for("topic") == frame
        assert error_of(guest.request("topic", room="tp-room", text="mine"))[0] == "forbidden"
        assert error_of(owner.request("topic", room="general", text="mine"))[0] == "forbidden"
        assert error_of(owner.request("topic", room="tp-room", text="x" * 401))[0] == "bad_request"


def test_messages_in_a_room_reach_its_members_only_with_their_own_seq(port):
    with registered2(port, "rm_a") as a, registered2(port, "rm_b") as b, registered2(port, "rm_c") as c:
        a.create("rm-room")
        b.join("rm-room")
        first = a.say_in("rm-room", "one")
        second = a.say_in("rm-room", "two")
        assert (first["seq"], second["seq"]) == (1, 2) and first["room"] == "rm-room"
        assert b.wait_for("message", text="one") == first
        assert b.wait_for("message", text="two") == second
        c.expect_nothing_pending()
        page = b.history(room="rm-room")
        assert page["room"] == "rm-room" and [m["text"] for m in page["messages"]] == ["one", "two"]


def test_users_of_a_room_lists_its_online_members(port):
    with registered2(port, "us_a") as a, registered2(port, "us_b") as b, registered2(port, "us_c"):
        a.create("us-room")
        b.join("us-room")
        a.send("users", room="us-room")
        users = a.wait_for("users")
        assert users["room"] == "us-room" and sorted(users["online"]) == ["us_a", "us_b"]
        assert users["count"] == 2


def test_rooms_lists_memberships_and_with_all_the_public_rooms(port):
    with registered2(port, "rl_a") as a, registered2(port, "rl_b") as b:
        a.create("rl-public", topic="open")
        a.create("rl-private", private=True)
        b.send("rooms")
        mine = b.expect("rooms")
        assert [r["room"] for r in mine["rooms"]] == ["general"] and mine["more"] is False
        b.send("rooms", all=True)
        everything = {r["room"]: r for r in b.expect("rooms")["rooms"]}
        assert everything["rl-public"] == {"room": "rl-public", "topic": "open", "private": False,
                                           "members": 1, "last_seq": 0, "read_seq": 0, "member": False}
        assert "rl-private" not in everything
        general = everything["general"]
        assert general["member"] is True and general["private"] is False


def test_membership_and_room_seq_survive_kill_9(start_chat, data_dir):
    server, port = start_chat("--rate-limit", "0")
    with registered2(port, "km_a") as a, registered2(port, "km_b") as b:
        a.create("km-room", private=True, topic="kept")
        a.send("invite", room="km-room", username="km_b")
        a.expect("ok", op="invite")
        b.wait_for("joined", room="km-room")
        for text in ("one", "two", "three"):
            a.say_in("km-room", text)
    server.kill()
    _, port = start_chat("--rate-limit", "0", data=data_dir)
    with logged_in2(port, "km_b") as b:
        b.send("rooms")
        rooms = {r["room"]: r for r in b.expect("rooms")["rooms"]}
        assert rooms["km-room"]["last_seq"] == 3 and rooms["km-room"]["topic"] == "kept"
        assert b.say_in("km-room", "four")["seq"] == 4


# -- direct messages ------------------------------------------------------------------


def test_a_direct_message_reaches_both_accounts_version_2_sessions_only(port):
    with registered2(port, "dm_a") as a, registered2(port, "dm_b") as b, \
            logged_in2(port, "dm_a") as a2, connect(port) as b_v1, registered2(port, "dm_c") as c:
        b_v1.login("dm_b")
        b_v1.ignore = {"join", "leave"}
        a.send("say", text="psst", to="DM_B", id="d1")
        sent = a.wait_for("message", text="psst")
        assert sent["from"] == "dm_a" and sent["to"] == "dm_b" and sent["seq"] == 1 and "room" not in sent
        assert b.wait_for("message", text="psst")["seq"] == 1
        assert a2.wait_for("message", text="psst")["to"] == "dm_b"
        b_v1.expect_nothing_pending()
        c.expect_nothing_pending()
        page = b.history(**{"with": "dm_a"})
        assert page["with"] == "dm_a" and [m["text"] for m in page["messages"]] == ["psst"]
        b.send("rooms")
        assert b.expect("rooms")["conversations"] == [{"with": "dm_a", "last_seq": 1, "read_seq": 0}]


def test_a_direct_message_to_no_account_is_no_such_user(port):
    with registered2(port, "dm_lonely") as a:
        assert error_of(a.request("say", text="hello?", to="dm_nobody"))[0] == "no_such_user"
        assert error_of(a.request("history", **{"with": "dm_nobody"}))[0] == "no_such_user"


# -- read markers ---------------------------------------------------------------------


def test_a_read_marker_moves_forward_and_reaches_the_other_sessions(port):
    with registered2(port, "rd_a") as a, logged_in2(port, "rd_a") as a2:
        a.create("rd-room")
        a2.wait_for("joined", room="rd-room")
        for text in ("1", "2", "3"):
            a.say_in("rd-room", text)
            a2.wait_for("message", text=text)
        a.send("read", room="rd-room", seq=2)
        a.expect_nothing_pending()
        assert a2.wait_for("read") == {"type": "read", "room": "rd-room", "seq": 2}
        a.send("read", room="rd-room", seq=1)  # lower: ignored
        a2.expect_nothing_pending()
        assert error_of(a.request("read", room="rd-room", seq=4))[0] == "bad_request"
        with logged_in2(port, "rd_a") as a3:
            a3.send("rooms")
            room = {r["room"]: r for r in a3.expect("rooms")["rooms"]}["rd-room"]
            assert (room["last_seq"], room["read_seq"]) == (3, 2)


# -- idempotency, delete, password ---------------------------------------------------------


def test_a_say_id_used_again_in_the_room_is_not_stored_twice(port):
    with registered2(port, "id_a") as a, registered2(port, "id_b") as b:
        a.create("id-room")
        b.join("id-room")
        first = a.say_in("id-room", "once", id="line-1")
        b.wait_for("message", text="once")
        a.send("say", room="id-room", text="once", id="line-1")
        assert a.wait_for("message", text="once") == first  # this session alone, the first one again
        b.expect_nothing_pending()
        assert [m["seq"] for m in a.history(room="id-room")["messages"]] == [first["seq"]]


def test_delete_removes_ones_own_message_for_every_version_2_session(port):
    with registered2(port, "de_a") as a, registered2(port, "de_b") as b:
        a.create("de-room")
        b.join("de-room")
        a.say_in("de-room", "oops")
        kept = a.say_in("de-room", "kept")
        b.wait_for("message", text="kept")
        assert error_of(b.request("delete", room="de-room", seq=1))[0] == "forbidden"
        a.send("delete", room="de-room", seq=1)
        deleted = {"type": "deleted", "room": "de-room", "seq": 1}
        assert a.wait_for("deleted") == deleted and b.wait_for("deleted") == deleted
        assert [m["seq"] for m in b.history(room="de-room")["messages"]] == [kept["seq"]]
        assert error_of(a.request("delete", room="de-room", seq=1))[0] == "bad_request"
        assert error_of(a.request("delete", room="de-room", seq=99))[0] == "bad_request"
        assert a.say_in("de-room", "next")["seq"] == 3  # never reused


def test_password_changes_with_the_current_one_and_keeps_the_other_sessions(port):
    with registered2(port, "pw_a") as a, logged_in2(port, "pw_a") as other:
        assert error_of(a.request("password", password="wrong horse battery",
                                  new_password="new horse battery"))[0] == "bad_credentials"
        a.send("password", password=PASSWORD, new_password="new horse battery", id="pw")
        a.expect("ok", op="password")
        other.send("ping", id="alive")
        other.expect("pong", id="alive")
        with connect(port) as old:
            old.send("login", username="pw_a", password=PASSWORD)
            old.expect_error("bad_credentials")
        logged_in2(port, "pw_a", "new horse battery").close()


def test_requests_sent_right_after_a_create_are_answered_after_it(port):
    with registered2(port, "seq_owner") as owner:
        owner.send("create", room="seq-room")
        owner.send("ping", id="after-create")
        assert owner.recv()["type"] == "joined"  # the room, then its owner's membership, stored
        owner.expect("pong", id="after-create")
