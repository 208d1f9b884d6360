"""The user's requests of PROTOCOL.md's version 2 (/join, /create, /go, /msg, /delete,
/passwd ...), checked against what the session knows before anything is sent, so a
mistake is told at once and in words. Sans-IO like the session they belong to."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from netlab import wire as p
from netlab.client.effects import Effect, Send, Show
from netlab.client.pending import Line
from netlab.client.places import GENERAL, dm_key, room_key
from netlab.client.words import ERROR_SENTENCES

if TYPE_CHECKING:
    from netlab.client.session import ClientSession

ROOM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_TOPIC = 400
PASSWORD_ID = "passwd"  # the `id` of a `password` request: its errors end no session

VERSION_1 = "this server speaks protocol version 1 only: it has no rooms or direct messages"


def join_id(room: str) -> str:
    """The `id` of a /join's or /create's request: its refusal ends the wait for `joined`."""
    return f"join {room}"


def valid_room(name: str) -> bool:
    return ROOM_NAME.fullmatch(name) is not None


def error(text: str) -> list[Effect]:
    return [Show("error", f"error: {text}")]


class Requests:
    """What the user asks beyond plain lines, for `session`'s current place."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.places = session.places

    def send(self, frame: dict) -> list[Effect]:
        """A version 2 request on this connection; why not, when it cannot go."""
        if self.places.version < 2 and self.session.online:
            return error(VERSION_1)
        if not self.session.online and not self.session.authenticated_once:
            return error("not logged in yet: try again once the prompt shows where you are")
        if not self.session.online:
            return error("not connected: try again once the client is back online")
        return [Send(frame)]

    def room(self, name: str) -> str | None:
        """The room a command names (a leading # allowed), or None when it breaks the rules."""
        name = name.removeprefix("#")
        return name if valid_room(name) else None

    def join(self, name: str, create: dict | None = None) -> list[Effect]:
        """/join ROOM, or /create (then `create` holds `private` and `topic`): the room
        becomes current once `joined` comes."""
        room = self.room(name)
        if room is None:
            return error(f"{name!r}: {ERROR_SENTENCES['invalid_room']}")
        if create is not None and len(create.get("topic", "")) > MAX_TOPIC:
            return error(f"a topic is at most {MAX_TOPIC} characters")
        kind = "join" if create is None else "create"
        effects = self.send({"type": kind, "room": room, "id": join_id(room), **(create or {})})
        if any(isinstance(effect, Send) for effect in effects):
            self.places.joining = room
        return effects

    def leave(self, name: str) -> list[Effect]:
        """/leave [ROOM]: the current room when none is named."""
        place = self.places.by_key[self.places.current]
        room = self.room(name) if name else (place.name if place.is_room else None)
        if room is None:
            return error("/leave ROOM, or /leave in a room")
        return self.send({"type": "leave", "room": room})

    def in_room(self, frame: dict) -> list[Effect]:
        """/invite and /topic: about the current room."""
        place = self.places.by_key[self.places.current]
        if not place.is_room:
            return error("that works in a room: /go ROOM first")
        return self.send({**frame, "room": place.name})

    def go(self, name: str) -> list[Effect]:
        """/go ROOM (or @USER), /query USER: switch to a place this account is in."""
        if name.startswith("@"):
            return self.query(name[1:])
        room = self.room(name)
        if room is None or room_key(room) not in self.places.by_key:
            return error(f"you are not in #{name.removeprefix('#')}: /join it first, /rooms lists yours")
        return self.places.go(room_key(room), self.session.online)

    def query(self, user: str) -> list[Effect]:
        if not p.valid_username(user):
            return error(ERROR_SENTENCES["invalid_username"])
        if self.places.version < 2 and self.session.authenticated_once:
            return error(VERSION_1)
        self.places.place(dm_key(user), user)
        return self.places.go(dm_key(user), self.session.online)

    def message(self, user: str, text: str, number: int | None = None) -> list[Effect]:
        """/msg USER TEXT: a direct message, without switching."""
        if not p.valid_username(user):
            return error(ERROR_SENTENCES["invalid_username"])
        if self.places.version < 2 and self.session.authenticated_once:
            return error(VERSION_1)
        place = self.places.place(dm_key(user), user)
        return self.session.queue(Line(text, number, place.key, place.say_target()))

    def delete(self, seq: int | None) -> list[Effect]:
        """/delete [SEQ]: one's last message shown in the current place, or that seq."""
        place = self.places.by_key[self.places.current]
        seq = place.own_last(self.places.me) if seq is None else seq
        if seq is None:
            return error(f"no message of yours is shown in {place.tag}: /delete SEQ")
        return self.send({"type": "delete", "seq": seq, **place.named()})

    def history(self, count: int) -> list[Effect]:
        """/history: `count` messages of the current place before the oldest shown."""
        timeline = self.places.by_key[self.places.current].timeline
        return [Send(timeline.older(count))] if self.session.connected else []

    def users(self) -> list[Effect]:
        place = self.places.by_key[self.places.current]
        scope = place.scope() if place.is_room and self.places.version == 2 else {}
        return [Send({"type": "users", **scope})] if self.session.connected else []

    def rooms(self, every: bool) -> list[Effect]:
        effects = self.send({"type": "rooms", **({"all": True} if every else {})})
        if isinstance(effects[0], Send):
            self.places.listing_asked = True
            self.places.listing_all = every
        return effects

    def password(self, current: str, new: str) -> list[Effect]:
        """/passwd: the new one is used for every login after its `ok`."""
        if not p.valid_password(new):
            return error(ERROR_SENTENCES["invalid_password"])
        effects = self.send({"type": "password", "password": current, "new_password": new, "id": PASSWORD_ID})
        if effects and isinstance(effects[0], Send):
            self.session.auth.new_password = new
        return effects

    def at_start(self, start: str) -> str | None:
        """After the first login's lists: the place the client was started in (--room, --to)
        becomes current; or why it cannot."""
        if start == GENERAL or start in self.places.by_key and self.places.version == 2:
            self.places.current = start
            return None
        if self.places.version < 2:
            return f"error: {VERSION_1}"
        name = start[1:]
        return (f"error: you are not in room {name} (or there is no such room): "
                f"join it first (/join {name} at the prompt)")
