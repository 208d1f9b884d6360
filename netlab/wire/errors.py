"""Error codes of PROTOCOL.md and the exception that carries one.

Apart from both framing and requests because both raise it: a framing fault is
a fatal `bad_frame`, a bad request a non-fatal `bad_request`, and each is
answered with the same `error` payload.
"""

from __future__ import annotations

ERROR_MESSAGES: dict[str, str] = {
    "bad_frame": "The frame is malformed.",
    "frame_too_large": "The frame is larger than max_frame.",
    "unknown_type": "This request type is not known.",
    "bad_request": "The request has missing, ill-typed or out-of-range members.",
    "not_authenticated": "Register or log in first.",
    "already_authenticated": "This session is already authenticated.",
    "invalid_username": "A username is 1 to 32 characters from A-Z a-z 0-9 _ . -",
    "invalid_password": "A password is 8 to 256 characters.",
    "username_taken": "This username is taken.",
    "bad_credentials": "Unknown username or wrong password.",
    "rate_limited": "Too many requests; this one was dropped, try again later.",
    "auth_timeout": "No register or login in time.",
    "server_full": "The server is full; try again later.",
    "slow_consumer": "The client stopped reading and its pending output passed the limit.",
    "invalid_room": "A room name is 1 to 32 characters of a-z 0-9 _ -, starting with a letter or digit.",
    "no_such_room": "No such room.",
    "room_exists": "A room of this name exists.",
    "not_member": "You are not a member of this room; join it first.",
    "no_such_user": "No such user.",
    "forbidden": "This is not yours to do.",
    "unavailable": "The server cannot store this right now; try again.",
}


def error(code: str, message: str, *, fatal: bool = False, id: str | None = None) -> dict:
    """The `error` payload (PROTOCOL.md): `fatal` and `id` only when they say something."""
    frame = {"type": "error", "code": code, "message": message}
    if fatal:
        frame["fatal"] = True
    if id is not None:
        frame["id"] = id
    return frame


class ProtocolError(Exception):
    """A request or frame the contract rejects; `to_frame()` is the `error` answer to send."""

    def __init__(self, code: str, message: str, *, fatal: bool = False, id: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fatal = fatal
        self.id = id

    def to_frame(self) -> dict:
        return error(self.code, self.message, fatal=self.fatal, id=self.id)
