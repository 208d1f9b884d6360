"""netlab.wire, byte by byte: every framing fault and validation rule of PROTOCOL.md."""

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab import wire as p
from netlab.wire import (
    DEFAULT_MAX_FRAME,
    HEADER,
    MIN_MAX_FRAME,
    FrameDecoder,
    History,
    Login,
    Ping,
    ProtocolError,
    Quit,
    Register,
    Say,
    Users,
    encode,
    encode_payload,
    parse_request,
)

FAST = settings(max_examples=200, deadline=None)


def framed(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def decode_one(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> dict:
    decoder = FrameDecoder(max_frame)
    decoder.feed(framed(payload))
    frame = decoder.next_frame()
    assert frame is not None
    assert decoder.buffered == 0
    return frame


def fault(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> ProtocolError:
    decoder = FrameDecoder(max_frame)
    decoder.feed(data)
    with pytest.raises(ProtocolError) as info:
        decoder.next_frame()
    assert info.value.fatal
    return info.value


def bad_frame(payload: bytes) -> None:
    assert fault(framed(payload)).code == "bad_frame"


def nested(depth: int) -> bytes:
    """A payload whose nesting is exactly `depth`, the outer object counting as 1."""
    return b'{"type":"t","x":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def rejects(frame: dict, code: str = "bad_request") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(frame)
    assert info.value.code == code
    assert not info.value.fatal
    return info.value


# --- Framing faults, one test each ---------------------------------------------------------


def test_zero_length_is_bad_frame():
    assert fault(b"\x00\x00\x00\x00").code == "bad_frame"


def test_oversized_length_rejected_from_the_header_alone():
    error = fault(HEADER.pack(DEFAULT_MAX_FRAME + 1))
    assert error.code == "frame_too_large"


def test_huge_length_rejected_from_the_header_alone():
    assert fault(b"\xff\xff\xff\xff").code == "frame_too_large"


def test_header_split_byte_by_byte_then_rejected():
    decoder = FrameDecoder()
    header = HEADER.pack(DEFAULT_MAX_FRAME + 1)
    for byte in header[:3]:
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None
    decoder.feed(header[3:])
    with pytest.raises(ProtocolError, match="frame_too_large"):
        decoder.next_frame()


def test_exactly_max_frame_is_accepted():
    head = b'{"type":"t","pad":"'
    payload = head + b"a" * (MIN_MAX_FRAME - len(head) - 2) + b'"}'
    assert len(payload) == MIN_MAX_FRAME
    assert decode_one(payload, MIN_MAX_FRAME)["type"] == "t"


def test_max_frame_plus_one_is_rejected():
    head = b'{"type":"t","pad":"'
    payload = head + b"a" * (MIN_MAX_FRAME + 1 - len(head) - 2) + b'"}'
    assert fault(framed(payload), MIN_MAX_FRAME).code == "frame_too_large"


def test_invalid_utf8_is_bad_frame():
    bad_frame(b'{"type":"t","x":"\xff"}')


def test_utf8_encoded_surrogate_is_bad_frame():
    bad_frame(b'{"type":"t","x":"\xed\xa0\x80"}')


def test_overlong_utf8_is_bad_frame():
    bad_frame(b'{"type":"t","x":"\xc0\xaf"}')


def test_bom_is_bad_frame():
    bad_frame(b'\xef\xbb\xbf{"type":"t"}')


def test_nan_is_bad_frame():
    bad_frame(b'{"type":"t","x":NaN}')


def test_infinity_is_bad_frame():
    bad_frame(b'{"type":"t","x":Infinity}')


def test_negative_infinity_is_bad_frame():
    bad_frame(b'{"type":"t","x":-Infinity}')


def test_lone_high_surrogate_in_value_is_bad_frame():
    bad_frame(b'{"type":"t","x":"\\ud800"}')


def test_lone_low_surrogate_in_list_is_bad_frame():
    bad_frame(b'{"type":"t","x":["a",["\\udc00"]]}')


def test_lone_surrogate_in_key_is_bad_frame():
    bad_frame(b'{"type":"t","\\ud800":1}')


def test_lone_surrogate_in_type_is_bad_frame():
    bad_frame(b'{"type":"\\udfff"}')


def test_surrogate_pair_escape_is_accepted():
    assert decode_one(b'{"type":"t","x":"\\ud83d\\ude00"}')["x"] == "\U0001f600"


def test_escaped_backslash_u_is_not_a_surrogate():
    assert decode_one(b'{"type":"t","x":"\\\\ud800"}')["x"] == "\\ud800"


def test_depth_32_is_accepted():
    assert decode_one(nested(32))["type"] == "t"


def test_depth_33_is_bad_frame():
    bad_frame(nested(33))


def test_depth_33_of_objects_is_bad_frame():
    bad_frame(b'{"type":"t","x":' + b'{"a":' * 32 + b"1" + b"}" * 32 + b"}")


def test_many_shallow_brackets_are_accepted():
    payload = b'{"type":"t","x":[' + b",".join([b"[]"] * 100) + b"]}"
    assert len(decode_one(payload)["x"]) == 100


@pytest.mark.parametrize(("open_", "close"), [(b"[", b"]"), (b'{"a":', b"}")])
def test_recursion_error_becomes_bad_frame(open_, close):
    depth = 100_000
    payload = open_ * depth + close * depth
    error = fault(framed(payload), max_frame=len(payload))
    assert error.code == "bad_frame"


def test_number_of_100_chars_is_accepted():
    assert decode_one(b'{"type":"t","x":' + b"9" * 100 + b"}")["x"] == int("9" * 100)


def test_negative_number_of_100_chars_is_accepted():
    assert decode_one(b'{"type":"t","x":-' + b"9" * 99 + b"}")["x"] == -int("9" * 99)


def test_number_of_101_chars_is_bad_frame():
    bad_frame(b'{"type":"t","x":' + b"9" * 101 + b"}")


def test_negative_number_of_101_chars_is_bad_frame():
    bad_frame(b'{"type":"t","x":-' + b"9" * 100 + b"}")


def test_float_of_101_chars_is_bad_frame():
    bad_frame(b'{"type":"t","x":0.' + b"1" * 99 + b"}")


def test_float_overflow_is_bad_frame():
    bad_frame(b'{"type":"t","x":1e309}')


def test_negative_float_overflow_is_bad_frame():
    bad_frame(b'{"type":"t","x":-1e309}')


def test_largest_double_is_accepted():
    assert decode_one(b'{"type":"t","x":1.7976931348623157e308}')["x"] == 1.7976931348623157e308


@pytest.mark.parametrize("payload", [b"[]", b'"type"', b"1", b"null", b"true", b'[{"type":"t"}]'])
def test_non_object_payload_is_bad_frame(payload):
    bad_frame(payload)


def test_missing_type_is_bad_frame():
    bad_frame(b'{"text":"hi"}')


@pytest.mark.parametrize("kind", [b"1", b"null", b"true", b'["say"]', b'{"a":"say"}'])
def test_non_string_type_is_bad_frame(kind):
    bad_frame(b'{"type":' + kind + b"}")


@pytest.mark.parametrize(
    "payload",
    [b"{", b'{"type":"t"', b'{"type":"t",}', b"{'type':'t'}", b'{"type":"t"}x', b" ", b"\x00"],
)
def test_invalid_json_is_bad_frame(payload):
    bad_frame(payload)


def test_raw_control_character_in_string_is_bad_frame():
    bad_frame(b'{"type":"t","x":"a\nb"}')


def test_white_space_around_tokens_is_accepted():
    assert decode_one(b' { "type" : "t" , "x" : [ 1 , 2 ] } ')["x"] == [1, 2]


def test_unknown_members_are_kept():
    assert decode_one(b'{"type":"t","future":{"a":[1]}}')["future"] == {"a": [1]}


def test_non_ascii_payload_decodes():
    assert decode_one('{"type":"t","x":"héllo ✓ 😀"}'.encode())["x"] == "héllo ✓ 😀"


# --- Decoder behaviour ---------------------------------------------------------------------


def test_fault_keeps_raising_and_drops_input():
    decoder = FrameDecoder()
    decoder.feed(framed(b"[]"))
    with pytest.raises(ProtocolError) as first:
        decoder.next_frame()
    decoder.feed(encode({"type": "ping"}))
    for _ in range(3):
        with pytest.raises(ProtocolError) as again:
            decoder.next_frame()
        assert again.value is first.value
    assert decoder.buffered == 0


def test_fault_after_good_frames_in_one_feed():
    decoder = FrameDecoder()
    decoder.feed(encode({"type": "a"}) + encode({"type": "b"}) + b"\x00\x00\x00\x00")
    assert decoder.next_frame() == {"type": "a"}
    assert decoder.next_frame() == {"type": "b"}
    with pytest.raises(ProtocolError, match="bad_frame"):
        decoder.next_frame()


def test_iter_raises_the_fault():
    decoder = FrameDecoder()
    decoder.feed(encode({"type": "a"}) + HEADER.pack(DEFAULT_MAX_FRAME + 1))
    seen = []
    with pytest.raises(ProtocolError, match="frame_too_large"):
        for frame in decoder:
            seen.append(frame)
    assert seen == [{"type": "a"}]


def test_empty_decoder_has_nothing():
    decoder = FrameDecoder()
    assert decoder.next_frame() is None
    assert list(decoder) == []
    assert decoder.buffered == 0


def test_split_at_every_byte():
    frames = [{"type": "say", "text": "héllo", "id": "1"}, {"type": "ping"}, {"type": "x", "n": 5}]
    data = b"".join(encode(f) for f in frames)
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        decoder.feed(data[:cut])
        got = list(decoder)
        decoder.feed(data[cut:])
        got += list(decoder)
        assert got == frames, cut
        assert decoder.buffered == 0


def test_one_byte_at_a_time():
    frames = [{"type": "say", "text": "😀" * 10}, {"type": "quit", "id": "q"}]
    data = b"".join(encode(f) for f in frames)
    decoder = FrameDecoder()
    got = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        got += list(decoder)
        assert decoder.buffered == (i + 1) - sum(len(encode(f)) for f in got)
    assert got == frames


def test_many_frames_in_one_feed():
    frames = [{"type": "say", "text": f"message {i}", "id": str(i)} for i in range(1000)]
    decoder = FrameDecoder()
    decoder.feed(b"".join(encode(f) for f in frames))
    assert list(decoder) == frames
    assert decoder.buffered == 0


def test_buffered_counts_partial_frame():
    data = encode({"type": "ping"})
    decoder = FrameDecoder()
    decoder.feed(data + data[:5])
    assert decoder.next_frame() == {"type": "ping"}
    assert decoder.buffered == 5
    assert decoder.next_frame() is None
    decoder.feed(data[5:])
    assert decoder.next_frame() == {"type": "ping"}
    assert decoder.buffered == 0


def test_max_frame_can_be_raised_after_welcome():
    decoder = FrameDecoder(MIN_MAX_FRAME)
    decoder.max_frame = 2 * MIN_MAX_FRAME
    frame = {"type": "t", "pad": "a" * MIN_MAX_FRAME}
    decoder.feed(encode(frame))
    assert decoder.next_frame() == frame


# --- Encoding ------------------------------------------------------------------------------


def test_encode_is_compact():
    data = encode({"type": "say", "text": "a b", "list": [1, {"k": True}]})
    assert data[4:] == b'{"type":"say","text":"a b","list":[1,{"k":true}]}'
    assert struct.unpack(">I", data[:4])[0] == len(data) - 4


def test_encode_writes_raw_utf8():
    payload = encode_payload({"type": "say", "text": "é✓😀"})
    assert b"\\u" not in payload
    assert "é✓😀".encode() in payload


def test_encode_escapes_control_characters_and_quotes():
    payload = encode_payload({"type": "t", "text": 'a\tb\n"c"\\'})
    assert payload == b'{"type":"t","text":"a\\tb\\n\\"c\\"\\\\"}'


def test_encode_refuses_nan():
    with pytest.raises(ValueError):
        encode({"type": "t", "x": float("nan")})


def test_encode_round_trips():
    frame = {"type": "message", "seq": 7, "ts": "x", "from": "bob", "text": "héllo\n", "id": "1"}
    assert decode_one(encode_payload(frame)) == frame


# --- Request validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "register", "username": "a.b-c_D9", "password": "12345678"},
         Register("a.b-c_D9", "12345678", None)),
        ({"type": "login", "username": "bob", "password": "pw", "id": "7"},
         Login("bob", "pw", "7")),
        ({"type": "say", "text": "hi", "id": "m1"}, Say("hi", "m1")),
        ({"type": "history"}, History(50, None, None, None)),
        ({"type": "history", "limit": 10, "before": 5}, History(10, 5, None, None)),
        ({"type": "history", "after": 0, "id": ""}, History(50, None, 0, "")),
        ({"type": "users"}, Users(None, None)),
        ({"type": "users", "after": "zed"}, Users("zed", None)),
        ({"type": "ping", "id": "p"}, Ping("p")),
        ({"type": "ping"}, Ping(None)),
        ({"type": "quit", "extra": [1]}, Quit(None)),
    ],
)  # fmt: skip
def test_parse_request_accepts(frame, expected):
    assert parse_request(frame) == expected


def test_unknown_type():
    error = rejects({"type": "shout", "id": "9"}, "unknown_type")
    assert error.id == "9"


def test_server_type_from_client_is_unknown():
    rejects({"type": "welcome"}, "unknown_type")


def test_unknown_type_is_not_checked_for_members():
    rejects({"type": "shout", "id": 5}, "unknown_type")


def test_id_of_64_chars_is_accepted():
    assert parse_request({"type": "ping", "id": "é" * 64}) == Ping("é" * 64)


def test_id_of_65_chars_is_bad_request():
    error = rejects({"type": "ping", "id": "a" * 65})
    assert error.id is None


@pytest.mark.parametrize("rid", [1, None, True, ["a"], {"a": "b"}])
def test_non_string_id_is_bad_request(rid):
    assert rejects({"type": "say", "text": "hi", "id": rid}).id is None


def test_request_id():
    assert p.request_id({"type": "x", "id": "a" * 64}) == "a" * 64
    assert p.request_id({"type": "x", "id": "a" * 65}) is None
    assert p.request_id({"type": "x", "id": 3}) is None
    assert p.request_id({"type": "x"}) is None


def test_error_carries_the_id():
    error = rejects({"type": "say", "text": "", "id": "m7"})
    assert error.id == "m7"
    assert error.to_frame() == {
        "type": "error", "code": "bad_request", "message": error.message, "id": "m7"
    }  # fmt: skip


@pytest.mark.parametrize("length", [1, 32])
def test_username_length_accepted(length):
    assert parse_request({"type": "register", "username": "u" * length, "password": "p" * 8})


@pytest.mark.parametrize("length", [0, 33])
def test_username_length_rejected(length):
    rejects({"type": "register", "username": "u" * length, "password": "p" * 8}, "invalid_username")


@pytest.mark.parametrize("name", ["é", "ａｂ", "٣", "a b", "a@b", "a\n", "\u212a", "ß", "a\x00"])
def test_username_non_ascii_or_other_characters_rejected(name):
    assert not p.valid_username(name)
    rejects({"type": "register", "username": name, "password": "p" * 8}, "invalid_username")


def test_username_allowed_characters():
    assert p.valid_username("AZaz09_.-")


@pytest.mark.parametrize(("length", "ok"), [(7, False), (8, True), (256, True), (257, False)])
def test_password_length(length, ok):
    frame = {"type": "register", "username": "bob", "password": "😀" * length}
    if ok:
        assert parse_request(frame) == Register("bob", "😀" * length, None)
    else:
        rejects(frame, "invalid_password")


def test_register_checks_username_before_password():
    rejects({"type": "register", "username": "", "password": ""}, "invalid_username")


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "register", "password": "p" * 8},
        {"type": "register", "username": "bob"},
        {"type": "register", "username": 1, "password": "p" * 8},
        {"type": "register", "username": "bob", "password": None},
        {"type": "login", "username": "bob"},
        {"type": "login", "username": ["bob"], "password": "p" * 8},
        {"type": "login", "username": "bob", "password": 12345678},
    ],
)
def test_auth_members_missing_or_ill_typed(frame):
    rejects(frame)


@pytest.mark.parametrize(
    ("username", "password"), [("", ""), ("é" * 40, "x"), ("a b", "p" * 300), ("x", "\x00")]
)
def test_login_content_is_not_validated(username, password):
    frame = {"type": "login", "username": username, "password": password}
    assert parse_request(frame) == Login(username, password, None)


@pytest.mark.parametrize(
    "text", ["a", "a" * 4000, "😀" * 4000, "a\tb", "a\nb", "a\r\nb", " a ", "\x7f"]
)
def test_text_accepted(text):
    assert parse_request({"type": "say", "text": text}) == Say(text, None)


@pytest.mark.parametrize("text", ["", "a" * 4001, " ", "\t\n\r ", "\u3000\u00a0"])
def test_text_length_or_white_space_rejected(text):
    rejects({"type": "say", "text": text})


@pytest.mark.parametrize("char", [c for c in map(chr, range(32)) if c not in "\t\n\r"])
def test_text_control_characters_rejected(char):
    assert not p.valid_text(f"a{char}b")
    rejects({"type": "say", "text": f"a{char}b"})


@pytest.mark.parametrize("text", [None, 5, ["hi"]])
def test_text_ill_typed(text):
    rejects({"type": "say", "text": text})


def test_text_missing():
    rejects({"type": "say"})


@pytest.mark.parametrize("limit", [1, 1000])
def test_limit_accepted(limit):
    assert parse_request({"type": "history", "limit": limit}).limit == limit


@pytest.mark.parametrize("limit", [0, 1001, -1, True, False, 50.0, "50", None])
def test_limit_rejected(limit):
    rejects({"type": "history", "limit": limit})


def test_before_and_after_together_rejected():
    rejects({"type": "history", "before": 10, "after": 2})


@pytest.mark.parametrize("key", ["before", "after"])
@pytest.mark.parametrize("value", [-1, True, 1.5, "3", None])
def test_before_after_ill_typed(key, value):
    rejects({"type": "history", key: value})


@pytest.mark.parametrize("after", [1, None, ["a"]])
def test_users_after_ill_typed(after):
    rejects({"type": "users", "after": after})


def test_users_after_need_not_be_a_valid_name():
    assert parse_request({"type": "users", "after": "é é"}) == Users("é é", None)


def test_request_types():
    assert frozenset({"register", "login"}) == p.AUTH_TYPES
    assert p.AUTH_TYPES < p.PRE_AUTH_TYPES < p.CLIENT_TYPES
    assert frozenset({"register", "login", "ping", "quit"}) == p.PRE_AUTH_TYPES
    assert len(p.CLIENT_TYPES) == 7


# --- Server frames -------------------------------------------------------------------------


def test_server_frames():
    assert p.welcome(65536) == {
        "type": "welcome", "server": "netlab", "protocol": 1, "max_frame": 65536, "versions": [1, 2]
    }  # fmt: skip
    assert p.ok("login", "Alice") == {"type": "ok", "op": "login", "username": "Alice", "protocol": 1}
    assert p.error("bad_request", "no") == {"type": "error", "code": "bad_request", "message": "no"}
    assert p.error("server_full", "m", fatal=True, id="1") == {
        "type": "error", "code": "server_full", "message": "m", "fatal": True, "id": "1"
    }  # fmt: skip
    assert p.message(3, "ts", "bob", "hi") == {
        "type": "message", "seq": 3, "ts": "ts", "from": "bob", "text": "hi"
    }  # fmt: skip
    assert p.message(3, "ts", "bob", "hi", "x")["id"] == "x"
    assert p.history_reply([], False) == {"type": "history", "messages": [], "more": False}
    assert p.users_reply(["a"], 3, True) == {
        "type": "users", "online": ["a"], "count": 3, "more": True
    }  # fmt: skip
    assert p.presence("join", "bob") == {"type": "join", "username": "bob"}
    assert p.presence("leave", "bob") == {"type": "leave", "username": "bob"}
    assert p.notice("hello") == {"type": "notice", "text": "hello"}
    assert p.kicked("bye") == {"type": "kicked", "reason": "bye"}
    assert p.shutdown("stop") == {"type": "shutdown", "reason": "stop"}
    assert p.pong(None) == {"type": "pong"}
    assert p.pong("7") == {"type": "pong", "id": "7"}
    assert p.bye() == {"type": "bye"}


def test_protocol_error_frame():
    error = ProtocolError("bad_frame", "why", fatal=True)
    assert error.to_frame() == {
        "type": "error",
        "code": "bad_frame",
        "message": "why",
        "fatal": True,
    }
    assert "bad_frame" in str(error)


def test_every_error_code_has_a_message():
    codes = {
        "bad_frame", "frame_too_large", "unknown_type", "bad_request", "not_authenticated",
        "already_authenticated", "invalid_username", "invalid_password", "username_taken",
        "bad_credentials", "rate_limited", "auth_timeout", "server_full", "slow_consumer",
        "invalid_room", "no_such_room", "room_exists", "not_member", "no_such_user", "forbidden",
        "unavailable",
    }  # fmt: skip
    assert set(p.ERROR_MESSAGES) == codes
    assert all(p.ERROR_MESSAGES.values())


def test_timestamp():
    assert p.timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert p.timestamp(1795463848.962) == "2026-11-23T19:57:28.962Z"
    assert p.timestamp(1795463848.9999) == "2026-11-23T19:57:28.999Z"
    # The second is cached apart from the milliseconds: each still changes where it should.
    assert p.timestamp(1795463849.0) == "2026-11-23T19:57:29.000Z"
    assert p.timestamp(1795463848.5) == "2026-11-23T19:57:28.500Z"
    assert p.timestamp(-0.001) == "1969-12-31T23:59:59.999Z"


def test_worst_case_message_fits_the_minimum_max_frame():
    text = "😀" * 4000
    item = p.message(10**15, p.timestamp(4e9), "u" * 32, text)
    assert len(encode_payload(item)) <= MIN_MAX_FRAME
    del item["type"]
    assert len(encode_payload(p.history_reply([item], True))) <= MIN_MAX_FRAME


# --- fit_items -----------------------------------------------------------------------------


def users_builder(names):
    return lambda chosen: p.users_reply(chosen, len(names), len(chosen) < len(names))


def test_fit_items_all_fit():
    names = ["alice", "bob"]
    frame, n = p.fit_items(names, users_builder(names), MIN_MAX_FRAME)
    assert n == 2
    assert frame == p.users_reply(names, 2, False)


def test_fit_items_empty():
    frame, n = p.fit_items([], lambda xs: p.history_reply(xs, False), MIN_MAX_FRAME)
    assert (frame, n) == (p.history_reply([], False), 0)


def test_fit_items_cuts_at_the_longest_prefix():
    names = [f"user{i:05d}" for i in range(5000)]
    build = users_builder(names)
    frame, n = p.fit_items(names, build, MIN_MAX_FRAME)
    assert frame == build(names[:n])
    assert len(encode_payload(frame)) <= MIN_MAX_FRAME
    assert len(encode_payload(build(names[: n + 1]))) > MIN_MAX_FRAME
    assert frame["more"] is True


def test_fit_items_at_least_one():
    items = [{"text": "a" * 100}, {"text": "b"}]
    frame, n = p.fit_items(items, lambda xs: p.history_reply(xs, True), 50)
    assert n == 1
    assert frame["messages"] == items[:1]


@FAST
@given(
    st.lists(st.text(max_size=30), max_size=60),
    st.integers(min_value=60, max_value=1500),
)
def test_fit_items_property(items, max_frame):
    build = users_builder(items)
    frame, n = p.fit_items(items, build, max_frame)
    assert frame == build(items[:n])
    if n > 1 or not items:
        assert len(encode_payload(frame)) <= max_frame
    assert n >= min(1, len(items))
    if n < len(items):
        assert len(encode_payload(build(items[: n + 1]))) > max_frame


# --- Properties ----------------------------------------------------------------------------

json_scalars = st.one_of(
    st.text(max_size=20), st.integers(min_value=-(10**30), max_value=10**30), st.booleans()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
frames = st.dictionaries(st.text(max_size=8), json_values, max_size=5).map(
    lambda d: {**d, "type": "t"}
)


@FAST
@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_any_split_decodes_the_same(sent, data):
    stream = b"".join(encode(f) for f in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoder.feed(stream[a:b])
        got += list(decoder)
    assert got == sent
    assert decoder.buffered == 0


garbage = st.one_of(
    st.binary(max_size=200),
    st.lists(st.binary(min_size=1, max_size=40).map(framed), max_size=4).map(b"".join),
    st.lists(
        st.text(alphabet='{}[]",:0123456789.eE+-\\u tyrpnlfaseNI\ud800', max_size=40)
        .map(lambda s: s.encode("utf-8", "surrogatepass"))
        .map(framed),
        max_size=4,
    ).map(b"".join),
    st.lists(frames.map(encode), max_size=3).map(b"".join).map(lambda b: b + b"\x00\x00"),
)


@FAST
@given(garbage, st.lists(st.integers(1, 50), max_size=20))
def test_any_bytes_give_frames_or_a_protocol_error(blob, chunks):
    decoder = FrameDecoder(MIN_MAX_FRAME)
    pos = 0
    try:
        for size in [*chunks, len(blob)]:
            decoder.feed(blob[pos : pos + size])
            pos += size
            for frame in decoder:
                assert isinstance(frame, dict)
                assert isinstance(frame["type"], str)
    except ProtocolError as exc:
        assert exc.fatal
        assert exc.code in {"bad_frame", "frame_too_large"}
        with pytest.raises(ProtocolError):
            decoder.next_frame()


@FAST
@given(frames)
def test_round_trip(frame):
    data = encode(frame)
    assert json.loads(data[4:]) == frame
    assert decode_one(data[4:], max_frame=len(data)) == frame


@FAST
@given(st.integers(min_value=MIN_MAX_FRAME, max_value=4 * MIN_MAX_FRAME), st.integers(-2, 2))
def test_header_edges(max_frame, delta):
    length = max_frame + delta
    decoder = FrameDecoder(max_frame)
    decoder.feed(HEADER.pack(length))
    if length > max_frame:
        with pytest.raises(ProtocolError, match="frame_too_large"):
            decoder.next_frame()
        return
    assert decoder.next_frame() is None  # waits for the payload
    head = b'{"type":"t","pad":"'
    decoder.feed(head + b"a" * (length - len(head) - 2) + b'"')
    assert decoder.next_frame() is None
    decoder.feed(b"}")
    assert decoder.next_frame()["pad"] == "a" * (length - len(head) - 2)


def test_a_message_without_an_id_ends_with_its_text_in_every_version():
    """Readers that take the text from the frame's end (the shared bench's generator) keep
    working on version 2's frames: `room` and `to` come before `text`."""
    for where in ({}, {"room": "general"}, {"room": "dev"}, {"to": "bob"}):
        payload = p.encode_payload(p.message(7, "2026-12-04T10:00:00.000Z", "ann", "hi there", **where))
        assert payload.endswith(b'"text":"hi there"}'), payload
