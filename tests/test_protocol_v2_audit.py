"""PROTOCOL.md's "Version 2", the sentences test_protocol_v2.py left open, over real sockets.

An outside reviewer's pass over the contract: every `ok` carries `protocol`, names come back
as registered whatever case a request used, conversations have read markers, paging, delete
and idempotent ids as rooms do, `rooms` pages, the bounds answer with the codes the README
names, and a version 1 session hears nothing of version 2.
"""

from __future__ import annotations

import pytest
from chatclient import PASSWORD, connect, registered
from v2client import logged_in2, registered2


@pytest.fixture(scope="module")
def port(module_chat):
    return module_chat[1]


def code_of(frame: dict) -> str:
    assert frame["type"] == "error", frame
    return frame["code"]


# -- negotiation and Details ---------------------------------------------------------------


def test_every_ok_carries_protocol(port):
    with connect(port) as one:
        one.send("register", username="okp_one", password=PASSWORD)
        assert one.expect("ok", op="register")["protocol"] == 1
    with registered2(port, "okp_a") as a, registered2(port, "okp_b"):
        a.create("okp-room")
        a.send("invite", room="okp-room", username="okp_b")
        assert a.wait_for("ok", op="invite")["protocol"] == 2
        a.send("password", password=PASSWORD, new_password="another horse battery")
        assert a.wait_for("ok", op="password")["protocol"] == 2


@pytest.mark.parametrize("version", [3, 2.0, "2", True, None])
def test_a_login_with_a_bad_protocol_is_bad_request(port, version):
    with connect(port) as client:
        client.send("login", username="nobody_here", password=PASSWORD, protocol=version)
        client.expect_error("bad_request")


def test_room_is_repeated_when_left_to_its_default(port):
    with registered2(port, "dflt") as c:
        assert c.history()["room"] == "general"
        c.send("users")
        assert c.expect("users")["room"] == "general"


def test_the_login_answers_repeat_general(port):
    with connect(port) as c:
        c.send("register", username="dflt_login", password=PASSWORD, protocol=2)
        c.expect("ok", op="register", protocol=2)
        assert c.expect("history")["room"] == "general"
        assert c.expect("users")["room"] == "general"
        assert c.expect("rooms")["more"] is False


def test_names_come_back_as_registered_whatever_case_the_request_used(port):
    with registered2(port, "CaseAnn") as ann, registered2(port, "CaseBob") as bob, \
            logged_in2(port, "caseann") as ann2:
        assert ann2.username == "CaseAnn"
        assert ann2.create("case-room")["owner"] == "CaseAnn"
        ann2.send("topic", room="case-room", text="t")
        assert ann2.wait_for("topic")["by"] == "CaseAnn"
        ann2.send("invite", room="case-room", username="casebob")
        ann2.wait_for("ok", op="invite")
        assert ann.wait_for("member", room="case-room")["username"] == "CaseBob"
        bob.wait_for("joined", room="case-room")
        ann2.send("say", text="hi bob", to="CASEBOB")
        sent = ann2.wait_for("message", text="hi bob")
        assert (sent["from"], sent["to"]) == ("CaseAnn", "CaseBob")
        page = ann2.history(**{"with": "casebob"})
        assert page["with"] == "CaseBob" and page["messages"][0]["from"] == "CaseAnn"
        ann2.send("read", seq=1, **{"with": "cAsEbOb"})
        assert ann.wait_for("read") == {"type": "read", "with": "CaseBob", "seq": 1}
        bob.send("rooms")
        assert bob.wait_for("rooms")["conversations"][0]["with"] == "CaseAnn"
        ann2.send("users", room="case-room")
        assert sorted(ann2.wait_for("users")["online"]) == ["CaseAnn", "CaseBob"]


def test_general_is_public_without_owner_and_counts_every_account(start_chat):
    _, port = start_chat("--rate-limit", "0")
    for name in ("gen_a", "gen_c"):
        registered2(port, name).close()
    registered(port, "gen_b").close()
    with logged_in2(port, "gen_a") as a:
        joined = a.join("general")
        assert joined["owner"] is None and joined["private"] is False and joined["members"] == 3
        assert joined["topic"] == ""


def test_both_room_and_to_or_with_is_bad_request(port):
    with registered2(port, "both_ask") as c, registered2(port, "both_other"):
        assert code_of(c.request("say", text="x", room="general", to="both_other")) == "bad_request"
        assert code_of(c.request("history", room="general", **{"with": "both_other"})) == "bad_request"
        assert code_of(c.request("read", seq=0)) == "bad_request"
        assert code_of(c.request("read", seq=0, room="general", **{"with": "both_other"})) == "bad_request"


def test_a_create_topic_follows_the_topic_rule(port):
    with registered2(port, "ct_owner") as c:
        assert code_of(c.request("create", room="ct-long", topic="x" * 401)) == "bad_request"
        assert c.create("ct-empty", topic="")["topic"] == ""
        assert c.create("ct-full", topic="y" * 400)["topic"] == "y" * 400
        c.send("topic", room="ct-full", text="")
        assert c.wait_for("topic")["text"] == ""


# -- direct conversations --------------------------------------------------------------------


def test_a_direct_message_reaches_an_account_that_is_offline(port):
    with registered2(port, "off_b"):
        pass
    with registered2(port, "off_a") as a:
        a.send("say", text="while you were out", to="off_b")
        a.wait_for("message", text="while you were out")
    with logged_in2(port, "off_b") as b:
        b.send("rooms")
        assert b.wait_for("rooms")["conversations"] == [{"with": "off_a", "last_seq": 1, "read_seq": 0}]
        assert [m["text"] for m in b.history(**{"with": "off_a"})["messages"]] == ["while you were out"]


def test_a_conversation_has_a_read_marker_shared_by_the_accounts_sessions(port):
    with registered2(port, "crd_a") as a, registered2(port, "crd_b") as b, \
            logged_in2(port, "crd_b") as b2:
        for text in ("one", "two"):
            a.send("say", text=text, to="crd_b")
            a.wait_for("message", text=text)
            b2.wait_for("message", text=text)
        b.wait_for("message", text="two")
        b.send("read", seq=2, **{"with": "crd_a"})
        b.expect_nothing_pending()
        assert b2.wait_for("read") == {"type": "read", "with": "crd_a", "seq": 2}
        b.send("read", seq=1, **{"with": "crd_a"})
        b2.expect_nothing_pending()
        assert code_of(b.request("read", seq=3, **{"with": "crd_a"})) == "bad_request"
        a.expect_nothing_pending()  # the other account's marker is its own
        b.send("rooms")
        assert b.wait_for("rooms")["conversations"] == [{"with": "crd_a", "last_seq": 2, "read_seq": 2}]


def test_a_conversation_nobody_wrote_in_reads_only_0(port):
    with registered2(port, "cz_a") as a, registered2(port, "cz_b"):
        a.send("read", seq=0, **{"with": "cz_b"})
        a.expect_nothing_pending()
        assert code_of(a.request("read", seq=1, **{"with": "cz_b"})) == "bad_request"
        assert code_of(a.request("read", seq=0, **{"with": "cz_nobody"})) == "no_such_user"


def test_delete_in_a_conversation_by_its_author_not_by_the_other(port):
    with registered2(port, "cd_a") as a, registered2(port, "cd_b") as b:
        a.send("say", text="regret", to="cd_b")
        b.wait_for("message", text="regret")
        a.send("say", text="fine", to="cd_b")
        b.wait_for("message", text="fine")
        assert code_of(b.request("delete", seq=1, **{"with": "cd_a"})) == "forbidden"
        a.send("delete", seq=1, **{"with": "CD_B"})
        assert a.wait_for("deleted") == {"type": "deleted", "with": "cd_b", "seq": 1}
        assert b.wait_for("deleted") == {"type": "deleted", "with": "cd_a", "seq": 1}
        assert [m["text"] for m in b.history(**{"with": "cd_a"})["messages"]] == ["fine"]
        assert code_of(a.request("delete", seq=1, **{"with": "cd_b"})) == "bad_request"


def test_a_say_id_used_again_in_a_conversation_is_not_stored_twice(port):
    with registered2(port, "ci_a") as a, registered2(port, "ci_b") as b:
        a.send("say", text="once", to="ci_b", id="dm-1")
        first = a.wait_for("message", text="once")
        assert b.wait_for("message", text="once") == first  # one frame: `to` is as the sender sees it
        a.send("say", text="once", to="ci_b", id="dm-1")
        assert a.wait_for("message", text="once") == first
        b.expect_nothing_pending()
        a.send("say", text="once", room="general", id="dm-1")  # another place: a new message
        assert a.wait_for("message", text="once")["room"] == "general"
        b.wait_for("message", text="once", room="general")
        assert [m["seq"] for m in b.history(**{"with": "ci_a"})["messages"]] == [1]


def test_no_request_shows_a_conversation_to_a_third_account(port):
    with registered2(port, "tp3_a") as a, registered2(port, "tp3_b") as b, registered2(port, "tp3_c") as c:
        a.send("say", text="between us", to="tp3_b")
        b.wait_for("message", text="between us")
        c.send("rooms")
        assert c.wait_for("rooms")["conversations"] == []
        assert c.history(**{"with": "tp3_a"})["messages"] == []
        assert code_of(c.request("delete", seq=1, **{"with": "tp3_a"})) == "bad_request"
        assert code_of(c.request("read", seq=1, **{"with": "tp3_a"})) == "bad_request"


# -- paging ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_windows(tmp_path_factory):
    """A server keeping 2 messages of each room and conversation in memory: pages come from disk."""
    from procs import serve

    server, port = serve("chat", tmp_path_factory.mktemp("windows") / "data", "--no-repl",
                         "--rate-limit", "0", "--history-size", "2", "--room-window", "2",
                         "--direct-window", "2")
    yield port
    server.kill()


def seqs(page: dict) -> tuple[list[int], bool]:
    return [m["seq"] for m in page["messages"]], page["more"]


@pytest.mark.parametrize("where", [{"room": "pg-room"}, {"with": "pg_b"}])
def test_history_pages_a_room_and_a_conversation_beyond_the_window(small_windows, where):
    port = small_windows
    name = "pg_a" if "room" in where else "pg_a2"
    with registered2(port, name) as a, (registered2 if name == "pg_a" else logged_in2)(port, "pg_b"):
        if "room" in where:
            a.create("pg-room")
        for n in range(1, 8):
            a.send("say", text=f"m{n}", **({"to": "pg_b"} if "with" in where else where))
            a.wait_for("message", text=f"m{n}")
        assert seqs(a.history(limit=3, before=7, **where)) == ([4, 5, 6], True)
        assert seqs(a.history(limit=2, after=1, **where)) == ([2, 3], True)
        assert seqs(a.history(limit=5, before=3, **where)) == ([1, 2], False)
        assert seqs(a.history(limit=5, after=4, **where)) == ([5, 6, 7], False)
        assert seqs(a.history(limit=2, **where)) == ([6, 7], True)
        page = a.history(before=2, **where)
        assert page["messages"][0]["text"] == "m1" and page[next(iter(where))] == where[next(iter(where))]


def test_rooms_pages_after_a_name_with_conversations_on_the_first_page_only(start_chat):
    _, port = start_chat("--rate-limit", "0", "--max-frame", "16384", "--room-rate", "0")
    topic = "t" * 400
    with registered2(port, "rp_a") as a, registered2(port, "rp_b"):
        a.send("say", text="hello", to="rp_b")
        a.wait_for("message", text="hello")
        names = [f"rp-{n:02}" for n in range(60)]  # 60 topics of 400: more than 16 KiB
        for name in names:
            a.create(name, topic=topic)
        listed: list[str] = []
        after = None
        while True:
            a.send("rooms", **({} if after is None else {"after": after}))
            raw_before = len(a.raw)
            page = a.wait_for("rooms")
            assert len(a.raw[raw_before]) <= 16384
            assert page["conversations"] == ([{"with": "rp_b", "last_seq": 1, "read_seq": 0}]
                                             if after is None else [])
            listed += [r["room"] for r in page["rooms"]]
            if not page["more"]:
                break
            assert page["rooms"], page
            after = page["rooms"][-1]["room"]
        assert listed == ["general", *names] and after is not None


def test_users_of_a_room_counts_its_online_members_on_every_page(port):
    with registered2(port, "uc_a") as a, registered2(port, "uc_b") as b, registered2(port, "uc_c"):
        a.create("uc-room")
        b.join("uc-room")
        a.send("users", room="uc-room", after="uc_a")
        page = a.wait_for("users")
        assert page == {"type": "users", "room": "uc-room", "online": ["uc_b"], "count": 2, "more": False}


# -- a version 1 session hears nothing of version 2 ---------------------------------------------


def test_a_version_1_session_never_gets_a_version_2_frame(start_chat):
    from test_chat_console import marked

    server, port = start_chat("--rate-limit", "0", repl=True)
    with registered2(port, "iso_a") as a, registered2(port, "iso_c") as c, \
            connect(port) as a_v1, registered(port, "iso_v") as v1:
        a_v1.login("iso_a")
        v2_of_v = logged_in2(port, "iso_v")
        a.create("iso-room", topic="t")
        a.join("general")
        c.join("iso-room")
        a.send("invite", room="iso-room", username="iso_v")
        a.wait_for("ok", op="invite")
        v2_of_v.wait_for("joined", room="iso-room")
        v2_of_v.close()  # iso_v stays a member, with its version 1 session alone
        a.send("topic", room="iso-room", text="new")
        a.wait_for("topic", room="iso-room")
        a.say_in("iso-room", "room only")
        said = a.say_in("general", "for all")
        a.send("read", room="general", seq=said["seq"])
        a.send("read", room="iso-room", seq=1)
        a.send("delete", room="general", seq=said["seq"])
        a.wait_for("deleted", room="general")
        a.send("say", text="direct", to="iso_v")
        a.wait_for("message", text="direct")
        a.send("say", text="direct too", to="iso_a")  # to oneself: the same account's sessions
        c.send("leave", room="iso-room")
        c.wait_for("left", room="iso-room")
        a.send("password", password=PASSWORD, new_password="iso horse battery")
        a.wait_for("ok", op="password")
        marked(server, "topic general Welcome", r"^topic of #general set$")
        a.wait_for("topic", room="general")
        for session in (a_v1, v1):
            frames = session.sync()
            assert [f for f in frames if f["type"] not in ("join", "leave")] == [said], frames


# -- bounds --------------------------------------------------------------------------------------


def refused(client, kind: str, **members) -> tuple[str, str]:
    client.send(kind, **members)
    frame = client.wait_for("error")  # past other rooms' traffic
    return frame["code"], frame["message"]


def test_full_bounds_are_forbidden_and_the_room_rate_rate_limited(start_chat):
    _, port = start_chat("--rate-limit", "0", "--max-rooms", "4", "--max-rooms-per-account", "2",
                         "--room-rate", "3", "--max-conversations", "1")
    with registered2(port, "bd_a") as a, registered2(port, "bd_b") as b, registered2(port, "bd_c") as c, \
            registered2(port, "bd_d") as d:
        a.create("bd-1")
        a.create("bd-2")
        code, message = refused(a, "create", room="bd-x")
        assert code == "forbidden" and "2" in message
        b.create("bd-3")  # general and three: the server is full
        code, message = refused(c, "create", room="bd-4")
        assert code == "forbidden" and "4" in message
        b.join("bd-1")
        assert refused(b, "join", room="bd-2")[0] == "forbidden"
        assert refused(a, "invite", room="bd-2", username="bd_b")[0] == "forbidden"
        for _ in range(3):  # three joins a minute, then rate_limited
            c.join("bd-1")
            c.send("leave", room="bd-1")
            c.wait_for("left", room="bd-1")
        assert refused(c, "join", room="bd-1")[0] == "rate_limited"
        c.send("say", text="first talk", to="bd_d")
        c.wait_for("message", text="first talk")
        assert refused(c, "say", text="second talk", to="bd_a")[0] == "forbidden"
        assert refused(a, "say", text="to a full one", to="bd_c")[0] == "forbidden"
        d.wait_for("message", text="first talk")
        d.send("say", text="an answer", to="bd_c")  # the conversation exists: no new one
        d.wait_for("message", text="an answer")


# -- the rest of the tables -----------------------------------------------------------------------


def test_a_version_1_say_naming_general_is_a_message_of_general(port):
    with registered(port, "v1_gen") as one:
        one.ignore = {"join", "leave"}
        one.send("say", text="to general by name", room="general")
        assert one.expect("message", text="to general by name")["room"] == "general"


def test_join_of_a_private_room_one_is_in_answers_joined_with_the_marker(port):
    with registered2(port, "jpv_a") as a:
        a.create("jpv-room", private=True)
        a.say_in("jpv-room", "one")
        a.say_in("jpv-room", "two")
        a.send("read", room="jpv-room", seq=1)
        joined = a.join("jpv-room")
        assert (joined["private"], joined["last_seq"], joined["read_seq"]) == (True, 2, 1)
        a.expect_nothing_pending()


def test_a_say_id_is_the_accounts_across_its_sessions_and_not_another_accounts(port):
    with registered2(port, "ida_a") as a, logged_in2(port, "ida_a") as a2, registered2(port, "ida_b") as b:
        a.create("ida-room")
        b.join("ida-room")
        first = a.say_in("ida-room", "same", id="k")
        a2.wait_for("message", text="same")
        a2.send("say", room="ida-room", text="same", id="k")  # the other device's resend
        assert a2.wait_for("message", text="same") == first
        a.expect_nothing_pending()
        b.wait_for("message", text="same")
        b.expect_nothing_pending()
        assert b.say_in("ida-room", "same", id="k")["seq"] == first["seq"] + 1  # b's own id


def test_a_wrong_current_password_counts_as_a_failed_login(port):
    with registered2(port, "pwf_a") as a:
        for n in range(5):
            a.send("password", password=f"wrong password {n}", new_password="new horse battery")
            a.expect_error("bad_credentials")
        with connect(port) as other:
            other.send("login", username="pwf_a", password=PASSWORD)
            other.expect_error("rate_limited")
