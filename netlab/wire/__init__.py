"""The wire protocol (PROTOCOL.md), sans-IO: no socket, clock, thread or file.

    errors.py    error codes and `ProtocolError`
    payload.py   a frame's JSON payload, strict both ways; the `Codec` protocol
    frames.py    the length-prefix codec: header, `FrameDecoder`, limits
    messages.py  requests and their validation, the server's payloads (version 1's, and
                 the members version 2 adds to them)
    rooms.py     version 2's requests and frames: rooms, direct messages, read markers

Code that speaks the protocol from outside the chat (the client, the load
generator, tests) takes its names from here, `from netlab import wire as p`,
as it took them from the single module this package grew out of.
"""

from netlab.wire.errors import ERROR_MESSAGES, ProtocolError, error
from netlab.wire.frames import (
    DEFAULT_MAX_FRAME,
    HEADER,
    LENGTH_PREFIX,
    MAX_MAX_FRAME,
    MIN_MAX_FRAME,
    FrameDecoder,
    encode,
    frame_payload,
)
from netlab.wire.messages import (
    AUTH_TYPES,
    CLIENT_TYPES,
    DEFAULT_HISTORY_LIMIT,
    GENERAL,
    MAX_HISTORY_LIMIT,
    MAX_ID_CHARS,
    MAX_TEXT,
    PRE_AUTH_TYPES,
    PROTOCOL_VERSION,
    ROOM_RULES,
    TEXT_RULES,
    VERSIONS,
    History,
    Login,
    Ping,
    Quit,
    Register,
    Request,
    Say,
    Users,
    bye,
    fit_items,
    history_reply,
    is_welcome,
    kicked,
    message,
    notice,
    ok,
    parse_request,
    pong,
    presence,
    request_id,
    shutdown,
    timestamp,
    users_reply,
    valid_password,
    valid_room,
    valid_text,
    valid_username,
    welcome,
    where,
)
from netlab.wire.payload import MAX_DEPTH, MAX_NUMBER_CHARS, Codec, Payload, encode_payload, parse_payload

__all__ = [
    "AUTH_TYPES", "CLIENT_TYPES", "DEFAULT_HISTORY_LIMIT", "DEFAULT_MAX_FRAME", "ERROR_MESSAGES",
    "HEADER", "LENGTH_PREFIX", "MAX_DEPTH", "MAX_HISTORY_LIMIT", "MAX_ID_CHARS", "MAX_MAX_FRAME",
    "MAX_NUMBER_CHARS", "MAX_TEXT", "MIN_MAX_FRAME", "PRE_AUTH_TYPES", "PROTOCOL_VERSION",
    "TEXT_RULES", "Codec", "FrameDecoder", "History", "Login", "Payload", "Ping", "ProtocolError",
    "Quit", "Register", "Request", "Say", "Users", "bye", "encode", "encode_payload", "error",
    "fit_items", "frame_payload", "history_reply", "is_welcome", "kicked", "message", "notice", "ok",
    "parse_payload", "parse_request", "pong", "presence", "request_id", "shutdown", "timestamp",
    "users_reply", "valid_password", "valid_text", "valid_username", "welcome",
    "GENERAL", "ROOM_RULES", "VERSIONS", "valid_room", "where",
]
