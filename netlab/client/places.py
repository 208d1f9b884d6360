"""The rooms and direct conversations of a version 2 session, sans-IO: where each frame
belongs, what was shown of each (a timeline apiece), which one is current, the read
markers and the unread counts.

A place's key is `#room` or `@user` (the user lower-cased: names are one account
whatever their case). A version 1 session has one place, `#general`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from netlab.client.effects import Effect, Send, Show, Timer
from netlab.client.timeline import Timeline
from netlab.client.words import listing, message_line, room_event

GENERAL = "#general"
READ_DELAY = 0.5  # a read marker goes out this long after the first message it covers: one `read` a burst
UNREAD_SHOWN = 100  # unread messages fetched at most when switching to a place (more: /history)
AUTHORS_KEPT = 1000  # shown messages remembered per place (for `deleted` and /delete)


def room_key(room: str) -> str:
    return f"#{room}"


def dm_key(user: str) -> str:
    return f"@{user.lower()}"


def start_place(room: str | None, user: str | None) -> tuple[str, str]:
    """The key and name of the place --room or --to names (general when neither does)."""
    if room:
        return room_key(room), room
    return (dm_key(user), user) if user else (GENERAL, "general")


def key_of(frame: dict, me: str) -> str:
    """The place a `message`, `history`, `read` or `deleted` frame is about."""
    to = frame.get("to")
    if frame.get("type") == "message" and isinstance(to, str):
        sender = frame.get("from")
        return dm_key(sender if isinstance(sender, str) and sender.lower() != me.lower() else to)
    if isinstance(frame.get("with"), str):
        return dm_key(frame["with"])
    room = frame.get("room")
    return room_key(room if isinstance(room, str) else "general")


@dataclass
class Place:
    """One room or conversation as this client knows it."""

    key: str
    name: str  # the room, or the other account as registered
    timeline: Timeline
    last_seq: int = 0  # the newest seq known to exist
    read_seq: int = 0  # the account's marker as last known
    seen_seq: int = 0  # the newest shown while current: the marker to send
    topic: str = ""
    authors: OrderedDict[int, str] = field(default_factory=OrderedDict)  # seq -> from, of those shown

    @property
    def tag(self) -> str:
        return f"{self.key[0]}{self.name}"

    @property
    def is_room(self) -> bool:
        return self.key.startswith("#")

    @property
    def unread(self) -> int:
        return max(0, self.last_seq - max(self.read_seq, self.seen_seq))

    def scope(self) -> dict:
        """`room` or `with` of a request about this place (none for general: its default)."""
        if self.key == GENERAL:
            return {}
        return {"room": self.name} if self.is_room else {"with": self.name}

    def named(self) -> dict:
        """`room` or `with`, `general` named too (`read` needs one)."""
        return self.scope() or {"room": "general"}

    def say_target(self) -> dict:
        return {"to": self.name} if not self.is_room else self.scope()

    def shown(self, message: dict, current: bool, me: str) -> None:
        """`message` was shown: a current place's is read, and so is an own one while
        nothing before it is unread."""
        seq = message.get("seq", 0)
        nothing_unread = self.unread == 0
        self.last_seq = max(self.last_seq, seq)
        self.authors[seq] = str(message.get("from"))
        if len(self.authors) > AUTHORS_KEPT:
            self.authors.popitem(last=False)
        if current or (nothing_unread and message.get("from") == me):
            self.seen_seq = max(self.seen_seq, seq)

    def update(self, entry: dict) -> None:
        """From a `rooms` entry or a `joined` frame."""
        self.last_seq = max(self.last_seq, entry.get("last_seq", 0))
        self.read_seq = max(self.read_seq, entry.get("read_seq", 0))
        self.topic = entry.get("topic", self.topic)

    def own_last(self, me: str) -> int | None:
        return next((seq for seq, author in reversed(self.authors.items()) if author == me), None)


class Places:
    """Every place of the session and the current one. `echo` is the session's: it is told
    of each message shown (its own line may have come back) and returns what follows."""

    def __init__(self, history_at_login: int | None, echo: Callable[[dict, str], list[Effect]]) -> None:
        self.by_key = {GENERAL: Place(GENERAL, "general", Timeline(history_at_login))}
        self.current = GENERAL
        self.echo = echo
        self.me = ""
        self.version = 1  # of the session on the current connection
        self.rooms_due = False  # the login's `rooms` (every page) has not come yet
        self.logins = 0  # on connections so far
        self.gathered: tuple[list[dict], list[dict]] = ([], [])  # rooms and conversations of the pages so far
        self.listing_asked = False  # /rooms: show the list once it is whole
        self.listing_all = False  # /rooms all: the public rooms too
        self.read_timer = False
        self.joining: str | None = None  # a room /join or /create asked for: current once joined

    @property
    def general(self) -> Timeline:
        return self.by_key[GENERAL].timeline

    def place(self, key: str, name: str) -> Place:
        """The place `key`, made when new (a first direct message, a room joined)."""
        if key not in self.by_key:
            place = Place(key, name, Timeline())
            place.timeline.scope = place.scope()
            self.by_key[key] = place
        return self.by_key[key]

    def synced(self) -> bool:
        return not self.rooms_due and not any(place.timeline.syncing for place in self.by_key.values())

    def logged_in(self, version: int) -> None:
        """A login on a new connection: with version 2 the rooms' gaps are filled once its
        `rooms` says how far each has gone, and their live messages are held till then."""
        self.rooms_due = version == 2
        self.logins += 1
        self.gathered = ([], [])
        for key, place in self.by_key.items():
            if key != GENERAL:
                place.timeline.syncing = self.rooms_due

    def lost(self) -> None:
        for place in self.by_key.values():
            place.timeline.lost()

    # -- frames --------------------------------------------------------------------------------

    def live(self, frame: dict, now: float) -> list[Effect]:
        key = key_of(frame, self.me)
        if key.startswith("#"):
            name = frame.get("room", "general")
        else:
            name = frame.get("from") if key == dm_key(str(frame.get("from"))) else frame.get("to")
        place = self.place(key, str(name))
        if self.rooms_due and key != GENERAL:
            place.timeline.syncing = True  # a new conversation's first message, before `rooms`
        return self.show(place, place.timeline.live(frame), now)

    def history(self, frame: dict, page: bool, now: float) -> list[Effect]:
        """The history after login, a /history `page`, or what a reconnect missed."""
        place = self.by_key.get(key_of(frame, self.me))
        if place is None:  # a page of a place left since
            return []
        timeline = place.timeline
        if timeline.syncing:
            messages, request = timeline.fill_gap(frame)
            return [*self.show(place, messages, now), *([Send(request)] if request else [])]
        messages = frame.get("messages", [])
        timeline.page(messages)
        tag = "" if place.key == self.current else place.tag
        lines: list[Effect] = []
        for message in messages:
            lines.append(Show("history", message_line(message, tag), message))
            place.shown(message, place.key == self.current, self.me)
        if page and messages:
            # Set apart from the live conversation, whose times it would seem to run back.
            count = len(messages)
            lines = [Show("page", f"── {count} earlier message{'s' if count > 1 else ''}"
                              f"{f' of {tag}' if tag else ''} ──", frame),
                     *lines, Show("page", "── end of earlier messages ──", frame)]
        # Hints about /history: a prompt has it, a pipe does not (and drops them).
        if not messages:
            lines.append(Show("hint", "no older messages", frame))
        elif frame.get("more"):
            lines.append(Show("hint", "(older messages: /history)", frame))
        return [*lines, *self.reads_due(now)]

    def show(self, place: Place, messages: list[dict], now: float) -> list[Effect]:
        """New messages of `place`, in order, tagged unless it is the current one."""
        effects: list[Effect] = []
        current = place.key == self.current
        for message in messages:
            effects += self.echo(message, place.key)
            effects.append(Show("message", message_line(message, "" if current else place.tag), message))
            place.shown(message, current, self.me)
        return [*effects, *self.reads_due(now)] if messages else effects

    def rooms(self, frame: dict, now: float) -> list[Effect]:
        """A page of `rooms`: the next is asked for; the whole list brings each place up to
        date (after a login: fills its gap) and, after /rooms, is shown."""
        rooms = [entry for entry in frame.get("rooms", []) if isinstance(entry, dict)]
        self.gathered[0].extend(rooms)
        self.gathered[1].extend(entry for entry in frame.get("conversations", []) if isinstance(entry, dict))
        if frame.get("more") and rooms:
            every = {"all": True} if self.listing_all else {}
            return [Send({"type": "rooms", "after": rooms[-1].get("room"), **every})]
        entries = self.gathered[0] + self.gathered[1]
        self.gathered = ([], [])
        effects = self.resync(entries, now) if self.rooms_due else []
        for entry in entries:
            key = dm_key(entry["with"]) if "with" in entry else room_key(str(entry.get("room")))
            if entry.get("member", True):
                self.place(key, str(entry.get("with", entry.get("room")))).update(entry)
        if self.listing_asked:
            self.listing_asked = self.listing_all = False
            effects += [Show("rooms", listing(entry, self.unread(entry)), entry) for entry in entries]
        return effects

    def unread(self, entry: dict) -> int:
        key = dm_key(entry["with"]) if "with" in entry else room_key(str(entry.get("room")))
        place = self.by_key.get(key)
        return place.unread if place is not None and entry.get("member", True) else 0

    def resync(self, entries: list[dict], now: float) -> list[Effect]:
        """After a login: drop the places left meanwhile, and page forward each of the
        others from its last message shown."""
        self.rooms_due = False
        listed = {dm_key(e["with"]) if "with" in e else room_key(str(e.get("room"))): e
                  for e in entries if e.get("member", True)}
        effects: list[Effect] = []
        for key in [key for key in self.by_key if key not in listed and key != GENERAL]:
            place = self.by_key[key]
            if not place.is_room:  # no conversation yet, or one begun since the list was made
                newest = max((message["seq"] for message in place.timeline.held), default=0)
                effects += self.resumed(place, newest, 0, now)
            else:
                del self.by_key[key]
        for key, entry in listed.items():
            if key != GENERAL:
                place = self.place(key, str(entry.get("with", entry.get("room"))))
                last = entry.get("last_seq", 0)
                # New to this client: at the first login the rest is history (its unread are
                # fetched on /go); after a reconnect it came meanwhile, unread ones at least.
                start = last if self.logins == 1 else max(entry.get("read_seq", 0), last - UNREAD_SHOWN)
                effects += self.resumed(place, last, start, now)
        if self.current not in self.by_key:
            self.current = GENERAL
        return effects

    def resumed(self, place: Place, last_seq: int, start: int, now: float) -> list[Effect]:
        messages, request = place.timeline.resume(last_seq, start)
        return [*self.show(place, messages, now), *([Send(request)] if request else [])]

    def event(self, frame: dict) -> list[Effect]:
        """`joined`, `left`, `member`, `topic`, `read`, `deleted`."""
        kind = frame["type"]
        key = key_of(frame, self.me)
        place = self.by_key.get(key)
        if kind == "joined":
            place = self.place(key, str(frame.get("room")))
            place.update(frame)
            place.timeline.start_at(frame.get("last_seq", 0))
            effects = [Show("status", room_event(frame, place.tag), frame)]
            if self.joining == place.name:
                self.joining = None
                effects += self.go(key, online=True)
            return effects
        if place is None:
            return []
        if kind == "left":
            del self.by_key[key]
            if self.current == key:
                self.current = GENERAL
            return [Show("status", room_event(frame, place.tag), frame)]
        if kind == "read":
            place.read_seq = max(place.read_seq, frame.get("seq", 0))
            return []
        if kind == "deleted":
            author = place.authors.pop(frame.get("seq", 0), None)
            whose = f" of {author}" if author else ""
            tag = "" if key == self.current else f"[{place.tag}] "
            return [Show("deleted", f"{tag}(message {frame.get('seq')}{whose} deleted)", frame)]
        if kind == "topic":
            place.topic = frame.get("text", "")
        return [Show("status", room_event(frame, place.tag), frame)]

    # -- the user's side --------------------------------------------------------------------------

    def go(self, key: str, online: bool) -> list[Effect]:
        """Make `key` current, and fetch what is unread there (shown, it is read)."""
        place = self.by_key[key]
        self.current = key
        status = Show("status", f"now in {place.tag}{f' ({place.unread} unread)' if place.unread else ''}")
        if not (place.unread and online and self.version == 2):
            return [status]
        # The unread ones, or when there are too many the newest of them.
        start = {"after": max(place.read_seq, place.seen_seq)} if place.unread <= UNREAD_SHOWN else {}
        return [status, Send({"type": "history", **start, "limit": min(place.unread, UNREAD_SHOWN),
                              **place.scope()})]

    def reads_due(self, now: float) -> list[Effect]:
        """The timer that sends the markers, unless one is set already."""
        due = any(place.seen_seq > place.read_seq for place in self.by_key.values())
        if self.version < 2 or self.read_timer or not due:
            return []
        self.read_timer = True
        return [Timer(now + READ_DELAY, ("read", 0))]

    def reads(self) -> list[Effect]:
        """The markers moved since the last were sent, one `read` a place (none on version 1)."""
        self.read_timer = False
        effects: list[Effect] = []
        for place in self.by_key.values() if self.version == 2 else ():
            if place.seen_seq > place.read_seq:
                place.read_seq = place.seen_seq
                effects.append(Send({"type": "read", "seq": place.seen_seq, **place.named()}))
        return effects
