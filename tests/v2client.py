"""A version 2 session for the tests, from PROTOCOL.md's "Version 2" alone.

Builds on `chatclient.ChatClient` (the framing, the waits); adds the negotiation
and the waits a session in several rooms needs.
"""

from __future__ import annotations

from typing import Any

from chatclient import PASSWORD, ChatClient


class V2Client(ChatClient):
    """One connection that asks for version 2 at login."""

    def __init__(self, port: int, **kwargs: Any) -> None:
        super().__init__(port, **kwargs)
        self.ignore = {"join", "leave"}  # presence of other tests' users

    def register2(self, username: str, password: str = PASSWORD) -> tuple[dict, ...]:
        self.send("register", username=username, password=password, protocol=2)
        return self.expect_v2_login("register")

    def login2(self, username: str, password: str = PASSWORD) -> tuple[dict, ...]:
        self.send("login", username=username, password=password, protocol=2)
        return self.expect_v2_login("login")

    def expect_v2_login(self, op: str) -> tuple[dict, ...]:
        """ok (protocol 2), history of general, users, then rooms: PROTOCOL.md's order."""
        ok = self.expect("ok", op=op, protocol=2)
        history = self.expect("history")
        users = self.expect("users")
        rooms = self.expect("rooms")
        self.username = ok["username"]
        return ok, history, users, rooms

    def request(self, type: str, **members: Any) -> dict:
        """Send a request and return the next frame."""
        self.send(type, **members)
        return self.recv()

    def say_in(self, room: str, text: str, id: str | None = None) -> dict:
        """Say `text` in `room` and return the message as it came back to this session."""
        frame: dict[str, Any] = {"type": "say", "text": text, "room": room}
        if id is not None:
            frame["id"] = id
        self.send_frame(frame)
        return self.wait_for("message", room=room, text=text)

    def wait_for(self, type: str, **members: Any) -> dict:
        """Skip frames until one of `type` holding `members` comes (other rooms' traffic)."""
        while True:
            frame = self.recv()
            if frame["type"] == type and all(frame.get(k) == v for k, v in members.items()):
                return frame
            assert frame["type"] != "error", f"waiting for {type} {members}, got {frame}"

    def create(self, room: str, **members: Any) -> dict:
        return self.expect_after("create", "joined", room=room, **members)

    def join(self, room: str) -> dict:
        return self.expect_after("join", "joined", room=room)

    def expect_after(self, request: str, answer: str, **members: Any) -> dict:
        self.send(request, **members)
        return self.expect(answer, room=members["room"])


def registered2(port: int, username: str, password: str = PASSWORD) -> V2Client:
    client = V2Client(port)
    client.register2(username, password)
    return client


def logged_in2(port: int, username: str, password: str = PASSWORD) -> V2Client:
    client = V2Client(port)
    client.login2(username, password)
    return client
