"""PROTOCOL.md's lifecycle, request table, validation and framing, over a real socket.

One server serves the module (flood control off): every test uses its own usernames
and only looks at its own connections. Failed logins stay well under the 20 a
minute one IP may make.
"""

from __future__ import annotations

import socket
import struct

import pytest
from chatclient import PASSWORD, ChatClient, connect, logged_in, registered


@pytest.fixture(scope="module")
def port(module_chat):
    return module_chat[1]


@pytest.fixture(scope="module")
def member(port):
    """An authenticated session shared by the tests that need one but watch no broadcasts."""
    client = registered(port, "member")
    client.ignore = {"message", "join", "leave"}  # other tests' chatter
    yield client
    client.close()


# -- lifecycle ----------------------------------------------------------------


def test_welcome_is_the_first_frame(port):
    with connect(port, welcome=False) as client:
        assert client.recv() == {"type": "welcome", "server": "netlab", "protocol": 1,
                                 "max_frame": 65536, "versions": [1, 2]}


def test_register_answers_ok_then_history_then_users(port):
    with connect(port) as client:
        client.send("register", username="Reg.Ist-er_1", password=PASSWORD)
        ok = client.recv()
        history = client.recv()
        users = client.recv()
        assert ok == {"type": "ok", "op": "register", "username": "Reg.Ist-er_1", "protocol": 1}
        assert history["type"] == "history"
        assert isinstance(history["messages"], list) and isinstance(history["more"], bool)
        assert users["type"] == "users"
        assert "Reg.Ist-er_1" in users["online"]
        assert users["count"] >= len(users["online"]) >= 1 and users["more"] is False
        client.expect_nothing_pending()


def test_login_answers_ok_with_the_name_as_registered(port):
    with registered(port, "CaseKept"), connect(port) as other:
        ok, history, users = other.login("cAsEkEpT")
        assert ok == {"type": "ok", "op": "login", "username": "CaseKept", "protocol": 1}
        assert history["type"] == "history" and users["type"] == "users"
        assert "CaseKept" in users["online"] and "cAsEkEpT" not in users["online"]


def test_a_session_survives_its_registration_and_can_chat(port):
    with registered(port, "Chatty") as client:
        message = client.say("first words")
        assert message["from"] == "Chatty"


def test_usernames_are_unique_case_insensitively(port):
    with registered(port, "Alice"), connect(port) as other:
        other.send("register", username="alice", password=PASSWORD, id="r1")
        other.expect_error("username_taken", id="r1")
        other.send("register", username="ALICE", password="another password")
        other.expect_error("username_taken")
        other.send("ping")
        other.expect("pong")  # not fatal


@pytest.mark.parametrize(("username", "password", "code"), [
    ("", PASSWORD, "invalid_username"),
    ("x" * 33, PASSWORD, "invalid_username"),
    ("has space", PASSWORD, "invalid_username"),
    ("caf\u00e9", PASSWORD, "invalid_username"),
    ("semi;colon", PASSWORD, "invalid_username"),
    ("okname1", "", "invalid_password"),
    ("okname2", "seven77", "invalid_password"),
    ("okname3", "p" * 257, "invalid_password"),
])
def test_register_rejects_invalid_names_and_passwords(port, username, password, code):
    with connect(port) as client:
        client.send("register", username=username, password=password, id="v")
        client.expect_error(code, id="v")
        client.send("say", text="still here?")
        client.expect_error("not_authenticated")  # the register did not authenticate


def test_register_accepts_the_extremes_of_the_rules(port):
    name = "E" * 31 + "9"  # 32 characters
    with connect(port) as client:
        client.register(name, "p" * 256)
    with logged_in(port, name.lower(), "p" * 256) as again:
        assert again.username == name
    with connect(port) as client:
        client.register("e.x-t_8", "8chars!!")  # a password of exactly 8 characters


@pytest.mark.parametrize(("username", "password"), [
    ("NoSuchUser", PASSWORD),  # unknown user
    ("member", "wrong password"),  # an existing user, wrong password
    ("not a name!", PASSWORD),  # a malformed name
    ("", ""),  # empty strings: bad_credentials at login, not invalid_*
])
def test_login_failures_are_bad_credentials(port, member, username, password):
    with connect(port) as client:
        client.send("login", username=username, password=password, id="L")
        client.expect_error("bad_credentials", id="L")
        client.send("history")
        client.expect_error("not_authenticated")


@pytest.mark.parametrize("frame", [
    {"type": "say", "text": "hello"},
    {"type": "history"},
    {"type": "history", "limit": 5},
    {"type": "users"},
])
def test_requests_that_need_a_session_get_not_authenticated(port, frame):
    with connect(port) as client:
        client.send_frame({**frame, "id": "n1"})
        client.expect_error("not_authenticated", id="n1")
        client.send("ping", id="alive")
        client.expect("pong", id="alive")


def test_not_authenticated_then_register_works(port):
    with connect(port) as client:
        client.send("say", text="too early")
        client.expect_error("not_authenticated")
        client.register("LateStarter")
        assert client.say("now it works")["seq"] > 0


def test_register_or_login_twice_is_already_authenticated(port, member):
    member.send("register", username="SecondName", password=PASSWORD, id="a1")
    member.expect_error("already_authenticated", id="a1")
    member.send("login", username="member", password=PASSWORD, id="a2")
    member.expect_error("already_authenticated", id="a2")
    member.send("ping", id="p")
    member.expect("pong", id="p")


@pytest.mark.parametrize("kind", ["frobnicate", "welcome", "message", "REGISTER", ""])
def test_unknown_type_before_authentication(port, kind):
    with connect(port) as client:
        client.send(kind, id="u")
        client.expect_error("unknown_type", id="u")
        client.send("ping")
        client.expect("pong")


def test_unknown_type_after_authentication(port, member):
    member.send("subscribe", channel="x", id="u2")
    member.expect_error("unknown_type", id="u2")
    member.send("ping", id="after")
    member.expect("pong", id="after")


@pytest.mark.parametrize("frame", [
    {"type": "say"},
    {"type": "say", "text": 5},
    {"type": "say", "text": None},
    {"type": "say", "text": ["hi"]},
    {"type": "say", "text": ""},
    {"type": "say", "text": "   \t\n "},
    {"type": "say", "text": "bell\u0007"},
    {"type": "say", "text": "nul\u0000"},
    {"type": "say", "text": "x" * 4001},
    {"type": "history", "limit": 0},
    {"type": "history", "limit": 1001},
    {"type": "history", "limit": "5"},
    {"type": "history", "limit": 2.5},
    {"type": "history", "limit": True},
    {"type": "history", "before": 3, "after": 1},
    {"type": "history", "before": "3"},
    {"type": "history", "after": None},
    {"type": "users", "after": 7},
])
def test_bad_requests_repeat_the_id_and_are_not_fatal(port, member, frame):
    member.send_frame({**frame, "id": "req-42"})
    member.expect_error("bad_request", id="req-42")
    member.send("ping", id="next")
    member.expect("pong", id="next")


@pytest.mark.parametrize("frame", [
    {"type": "register", "password": PASSWORD},
    {"type": "register", "username": "NumPass", "password": 12345678},
    {"type": "login", "username": "member"},
    {"type": "login", "username": 7, "password": PASSWORD},
])
def test_bad_requests_before_authentication(port, frame):
    with connect(port) as client:
        client.send_frame({**frame, "id": "b"})
        client.expect_error("bad_request", id="b")
        client.send("ping")
        client.expect("pong")


@pytest.mark.parametrize("bad_id", ["i" * 65, 7, None, ["x"], {"a": 1}, True])
def test_an_id_that_is_not_a_short_string_is_bad_request(port, member, bad_id):
    member.send("ping", id=bad_id)
    frame = member.expect_error("bad_request")
    assert "id" not in frame  # nothing valid to repeat
    member.send("say", text="ignored?", id=bad_id)
    member.expect_error("bad_request")
    member.send("ping", id="i" * 64)  # 64 is still fine
    member.expect("pong", id="i" * 64)


def test_text_at_the_limits_is_accepted(port, member):
    assert member.say("x" * 4000)["text"] == "x" * 4000
    assert member.say("\u00e9" * 4000)["text"] == "\u00e9" * 4000  # code points, not bytes
    assert member.say("tab\there\r\nand lf")["text"] == "tab\there\r\nand lf"


def test_ping_answers_pong_with_and_without_id(port, member):
    with connect(port) as client:
        client.send("ping")
        assert client.recv() == {"type": "pong"}
        client.send("ping", id="abc")
        assert client.recv() == {"type": "pong", "id": "abc"}
    member.send("ping", id="\u00e9\u00e8 \U0001f600")
    assert member.recv() == {"type": "pong", "id": "\u00e9\u00e8 \U0001f600"}
    member.send("ping", id="")
    assert member.recv() == {"type": "pong", "id": ""}


def test_unknown_members_are_ignored(port, member):
    member.send("ping", id="f", future={"x": [1, 2.5, None]}, flag=True)
    member.expect("pong", id="f")


def test_quit_before_authentication_says_bye_and_closes(port):
    with connect(port) as client:
        client.send("quit")
        assert client.recv() == {"type": "bye"}
        client.expect_closed()


def test_quit_after_authentication_says_bye_and_closes(port):
    with registered(port, "Quitter") as client:
        client.send("quit")
        assert client.recv() == {"type": "bye"}
        client.expect_closed()
    with logged_in(port, "Quitter"):
        pass  # the account outlives the session


# -- framing --------------------------------------------------------------------


def assert_others_unaffected(port: int, member: ChatClient) -> None:
    member.send("ping", id="unaffected")
    member.expect("pong", id="unaffected")
    with connect(port) as fresh:
        fresh.send("ping")
        fresh.expect("pong")


@pytest.mark.parametrize("payload", [
    pytest.param(b"\xff\xfe{}", id="invalid-utf8"),
    pytest.param(b'{"type":"ping","x":"\xc3"}', id="truncated-utf8"),
    pytest.param(b'{"type":"ping","x":"\xed\xa0\x80"}', id="utf8-encoded-surrogate"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"ping"', id="string"),
    pytest.param(b"42", id="number"),
    pytest.param(b"null", id="null"),
    pytest.param(b"{}", id="no-type"),
    pytest.param(b'{"id":"x"}', id="no-type-with-id"),
    pytest.param(b'{"type":1}', id="type-number"),
    pytest.param(b'{"type":null}', id="type-null"),
    pytest.param(b'{"type":"ping","x":NaN}', id="NaN"),
    pytest.param(b'{"type":"ping","x":-Infinity}', id="Infinity"),
    pytest.param(b'{"type":"ping","x":1e400}', id="out-of-double-range"),
    pytest.param(b'{"type":"ping","x":' + b"1" * 101 + b"}", id="101-digit-number"),
    pytest.param(b'\xef\xbb\xbf{"type":"ping"}', id="BOM"),
    pytest.param(b'{"type":"ping","x":"\\ud800"}', id="lone-surrogate"),
    pytest.param(b'{"type":"ping"', id="truncated-json"),
    pytest.param(b'{"type":"ping"} {}', id="two-values"),
    pytest.param(b"{'type':'ping'}", id="single-quotes"),
    pytest.param(b'{"type":"ping","x":' + b"[" * 32 + b"]" * 32 + b"}", id="33-deep"),
])
def test_framing_faults_are_fatal_bad_frame(port, member, payload):
    with connect(port) as client:
        client.send_payload(payload)
        client.expect_fatal("bad_frame")
    assert_others_unaffected(port, member)


def test_zero_length_frame_is_fatal_bad_frame(port, member):
    with connect(port) as client:
        client.send_raw(b"\0\0\0\0")
        client.expect_fatal("bad_frame")
    assert_others_unaffected(port, member)


def test_a_fault_after_authentication_closes_only_that_session(port, member):
    with registered(port, "Faulty") as client:
        client.send_payload(b'{"type":"say","text":NaN}')
        client.expect_fatal("bad_frame")
    assert_others_unaffected(port, member)


@pytest.mark.parametrize("length", [65537, 0xFFFFFFFF])
def test_oversized_frame_is_refused_from_the_header_alone(port, member, length):
    with connect(port) as client:
        client.send_raw(struct.pack(">I", length))  # no payload follows
        client.expect_fatal("frame_too_large")
    assert_others_unaffected(port, member)


def test_frame_of_exactly_max_frame_is_accepted(port, member):
    envelope = b'{"type":"ping","id":"max","pad":""}'
    padded = envelope[:-2] + b"a" * (65536 - len(envelope)) + b'"}'
    assert len(padded) == 65536
    member.send_payload(padded)
    member.expect("pong", id="max")


def test_32_levels_of_nesting_are_accepted(port, member):
    nested = b'{"type":"ping","id":"deep","x":' + b"[" * 31 + b"]" * 31 + b"}"
    member.send_payload(nested)
    member.expect("pong", id="deep")


def test_frames_split_byte_by_byte(port):
    with connect(port) as client:
        data = b"".join(struct.pack(">I", len(p)) + p for p in [
            b'{"type":"ping","id":"one"}',
            '{"type":"ping","id":"\u00e9\U0001f600"}'.encode(),
        ])
        for i in range(len(data)):
            client.send_raw(data[i:i + 1])
        client.expect("pong", id="one")
        client.expect("pong", id="\u00e9\U0001f600")


def test_register_split_byte_by_byte_then_chat(port):
    with connect(port) as client:
        body = b'{"type":"register","username":"ByteByByte","password":"' + PASSWORD.encode() + b'"}'
        frame = struct.pack(">I", len(body)) + body
        for i in range(len(frame)):
            client.send_raw(frame[i:i + 1])
        client.expect_authenticated("register", "ByteByByte")
        assert client.say("slowly typed")["from"] == "ByteByByte"


def test_many_frames_coalesced_in_one_send(port, member):
    data = b"".join(
        struct.pack(">I", len(p)) + p
        for p in (f'{{"type":"ping","id":"c{n}"}}'.encode() for n in range(500))
    )
    member.send_raw(data)
    for n in range(500):
        member.expect("pong", id=f"c{n}")


def test_a_fault_coalesced_after_good_frames_answers_them_first(port):
    with connect(port) as client:
        good = b'{"type":"ping","id":"g"}'
        client.send_raw(struct.pack(">I", len(good)) + good + b"\0\0\0\0")
        client.expect("pong", id="g")
        client.expect_fatal("bad_frame")


def test_a_half_sent_frame_then_close_disturbs_nobody(port, member):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(struct.pack(">I", 100) + b'{"type":')
    sock.close()
    assert_others_unaffected(port, member)


def test_server_frames_are_compact_utf8(port):
    with registered(port, "Compact") as client:
        message = client.say("caf\u00e9 \u65e5\u672c \U0001f600 \"q\" \\ /")
    [raw] = [r for r in client.raw if r.startswith(b'{"type":"message"') and b"Compact" in r]
    assert b"\\u" not in raw and b": " not in raw and b", " not in raw
    assert "caf\u00e9 \u65e5\u672c \U0001f600".encode() in raw
    assert message["text"] == "caf\u00e9 \u65e5\u672c \U0001f600 \"q\" \\ /"
