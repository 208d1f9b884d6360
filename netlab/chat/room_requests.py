"""Rooms and membership requests of version 2: `rooms`, `create`, `join`, `leave`, `invite`, `topic`.

Every change is on disk before it is answered: the chat reserves it in memory, submits
its job (`chat/jobs.py`), and answers in the job's `done`, or rolls the reservation back
and answers `unavailable`. The answer comes before the events it causes (`joined` before
the others' `member`, the inviter's `ok` before the invitee's `joined`), and a `member`
event is broadcast to the room's log before the account's own sessions subscribe to it
(or after they unsubscribe), so it reaches the room's other members only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from netlab import wire as p
from netlab.chat.jobs import ROOM_TAKEN, SaveMembership, SaveRoom
from netlab.store.room_records import GENERAL, RoomRecord
from netlab.wire import rooms as w

if TYPE_CHECKING:
    from netlab.chat.sessions import Session
    from netlab.chat_core import Chat
    from netlab.store.accounts import Accounts
    from netlab.store.records import Account


def owner_name(accounts: Accounts, record: RoomRecord | None) -> str | None:
    """A room's owner as registered; None for general (or an owner whose account is gone)."""
    account = accounts.by_id(record.owner) if record is not None and record.owner else None
    return account.username if account is not None else None


class RoomRequests:
    """The chat's room requests; the state they change is `chat.rooms`."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    def handlers(self) -> dict[type, Any]:
        return {w.Rooms: self.send_rooms, w.Create: self.create, w.Join: self.join, w.Leave: self.leave,
                w.Invite: self.invite, w.Topic: self.topic}

    # -- what a room looks like to an account ------------------------------------------------

    def _entry(self, name: str, account_id: str) -> dict:
        """A room as `joined` and `rooms` describe it."""
        chat, rooms = self.chat, self.chat.rooms
        record = rooms.records.get(name)
        return {"room": name, "topic": record.topic if record else rooms.general_topic,
                "private": bool(record and record.private), "owner": owner_name(chat.accounts, record),
                "members": rooms.member_count(name, len(chat.accounts)),
                "last_seq": chat.journals.journal(name).last_seq, "read_seq": rooms.marker(name, account_id)}

    def joined_frame(self, name: str, account_id: str) -> p.Payload:
        return p.encode_payload({"type": "joined", **self._entry(name, account_id)})

    def send_rooms(self, session: Session, request: w.Rooms) -> None:
        """`rooms`: the account's rooms (with `all`, every public one too) after `after`, and on
        a first page its conversations; cut to fit a frame, conversations kept first."""
        chat, rooms, me = self.chat, self.chat.rooms, session.account.id
        if request.all:
            names = [n for n in rooms.names if rooms.visible(n, me)]
        else:
            names = sorted([GENERAL, *rooms.rooms_of(me)])
        if request.after is not None:
            names = [n for n in names if n > request.after]
        entries = []
        for name in names:
            entry = self._entry(name, me)
            del entry["owner"]
            entry["member"] = rooms.is_member(name, me)
            entries.append(entry)
        talks = self._conversations(session) if request.after is None else []
        max_frame = chat.config.max_frame
        _, n = p.fit_items(talks, lambda chosen: w.rooms_reply([], chosen, False), max_frame)
        talks, cut = talks[:n], n < len(talks)
        if cut:  # no room fits beside them: the rooms follow with `after: ""`
            return chat.fx.send(session.sid, p.encode_payload(w.rooms_reply([], talks, True)))
        frame, _ = p.fit_items(
            entries, lambda chosen: w.rooms_reply(chosen, talks, len(chosen) < len(entries)), max_frame)
        chat.fx.send(session.sid, p.encode_payload(frame))

    def _conversations(self, session: Session) -> list[dict]:
        chat, me = self.chat, session.account.id
        found = []
        for other_id in chat.rooms.conversations(me):
            other = chat.accounts.by_id(other_id)
            if other is None:
                continue  # removed by `clear file`
            key = (me, other_id) if me <= other_id else (other_id, me)
            found.append({"with": other.username, "last_seq": chat.journals.journal(key).last_seq,
                          "read_seq": chat.rooms.marker(key, me)})
        return sorted(found, key=lambda c: c["with"].lower())

    # -- membership ------------------------------------------------------------------------------

    def admit(self, name: str, account: Account, joins: bool) -> None:
        """`account` is now a member (stored): `joined` to its version 2 sessions, `member`
        to the room's others (unless it created the room), then its sessions read the room.
        Also another node's join, in bus mode (chat/replica.py)."""
        chat, account_id = self.chat, account.id
        chat.rooms.set_member(name, account_id, True)
        sids = chat.v2_sessions(account.username)
        frame = self.joined_frame(name, account_id)
        for sid in sids:
            chat.fx.send(sid, frame)
        if joins:
            chat.broadcast(p.encode_payload(w.member(name, account.username, "joined")), name)
        for sid in sids:
            chat.fx.subscribe(sid, name)
        if chat.presence.is_online(account.username):  # here, or on another node (bus mode)
            chat.rooms.joined_online(name, account.username.lower())

    def _may_join(self, session: Session, account_id: str, rid: str | None, *, rate: bool) -> bool:
        """The bounds of a new membership: rooms per account and (create, join) the rate."""
        chat = self.chat
        limit = chat.config.max_rooms_per_account
        if chat.rooms.memberships(account_id) >= limit:
            chat.error(session, "forbidden", rid, f"an account may be in at most {limit} rooms")
            return False
        if rate and not chat.rooms.take_room_token(account_id, chat.config.room_rate, chat.now):
            chat.error(session, "rate_limited", rid, "you are creating or joining rooms too fast")
            return False
        return True

    def create(self, session: Session, request: w.Create) -> None:
        chat, rooms, me, name = self.chat, self.chat.rooms, session.account.id, request.room
        if name == GENERAL or name in rooms.records or name in rooms.reserved:
            return chat.error(session, "room_exists", request.id)
        if len(rooms) >= chat.config.max_rooms:
            limit = chat.config.max_rooms
            return chat.error(session, "forbidden", request.id, f"the server holds {limit} rooms")
        if not self._may_join(session, me, request.id, rate=True):
            return
        record = RoomRecord(name, request.private, me, request.topic, p.timestamp(chat.wall))
        rooms.reserved.add(name)
        rooms.joining[me] += 1

        def saved(result: object) -> None:
            if isinstance(result, Exception) or result == ROOM_TAKEN:
                rooms.reserved.discard(name)
                rooms.joining[me] -= 1
                if result == ROOM_TAKEN:  # bus mode: another node's create came first
                    return chat.error(session, "room_exists", request.id)
                return chat.error(session, "unavailable", request.id)
            rooms.add_room(record)
            rooms.reserved.discard(name)
            chat.fx.submit(session.sid, SaveMembership(name, me, True), owner_in)

        def owner_in(result: object) -> None:
            rooms.joining[me] -= 1
            if isinstance(result, Exception):
                return chat.error(session, "unavailable", request.id)  # the room stays, without its owner
            self.admit(name, session.account, joins=False)

        chat.fx.submit(session.sid, SaveRoom(record, me, new=True), saved)

    def join(self, session: Session, request: w.Join) -> None:
        chat, rooms, me, name = self.chat, self.chat.rooms, session.account.id, request.room
        code = rooms.access(name, me)
        if code is None:  # general, or a room it is in already: nothing changes
            return chat.fx.send(session.sid, self.joined_frame(name, me))
        if code == "no_such_room":
            return chat.error(session, code, request.id)
        if not self._may_join(session, me, request.id, rate=True):
            return
        self._store_member(session, name, me, request.id,
                           lambda: self.admit(name, session.account, joins=True))

    def invite(self, session: Session, request: w.Invite) -> None:
        chat, rooms, name = self.chat, self.chat.rooms, request.room
        code = rooms.access(name, session.account.id)
        if code is not None:
            return chat.error(session, code, request.id)
        invitee = chat.accounts.get(request.username) if p.valid_username(request.username) else None
        if invitee is None:
            return chat.error(session, "no_such_user", request.id)
        ok = p.encode_payload(p.ok("invite", session.username, session.version))
        if rooms.is_member(name, invitee.id):
            return chat.fx.send(session.sid, ok)
        if not self._may_join(session, invitee.id, request.id, rate=False):
            return

        def answer() -> None:
            chat.fx.send(session.sid, ok)
            self.admit(name, invitee, joins=True)

        self._store_member(session, name, invitee.id, request.id, answer)

    def _store_member(self, session: Session, name: str, account_id: str, rid: str | None, then: Any) -> None:
        """Store a new membership (reserved meanwhile against the account's bound), then `then()`."""
        chat, rooms = self.chat, self.chat.rooms
        rooms.joining[account_id] += 1

        def done(result: object) -> None:
            rooms.joining[account_id] -= 1
            if isinstance(result, Exception):
                return chat.error(session, "unavailable", rid)
            if rooms.is_member(name, account_id):  # another session's join got there first
                return chat.fx.send(session.sid, self.joined_frame(name, account_id))
            then()

        chat.fx.submit(session.sid, SaveMembership(name, account_id, True), done)

    def leave(self, session: Session, request: w.Leave) -> None:
        chat, rooms, me, name = self.chat, self.chat.rooms, session.account.id, request.room
        if name == GENERAL:
            return chat.error(session, "forbidden", request.id, "nobody leaves general")
        code = rooms.access(name, me)
        if code is not None:
            return chat.error(session, code, request.id)

        def done(result: object) -> None:
            if isinstance(result, Exception):
                return chat.error(session, "unavailable", request.id)
            frame = p.encode_payload(w.left(name))
            if not rooms.is_member(name, me):  # another session's leave got there first
                return chat.fx.send(session.sid, frame)
            rooms.set_member(name, me, False)
            rooms.left_online(name, session.username.lower())
            for sid in chat.v2_sessions(session.username):
                chat.fx.unsubscribe(sid, name)
                chat.fx.send(sid, frame)
            chat.broadcast(p.encode_payload(w.member(name, session.username, "left")), name)

        chat.fx.submit(session.sid, SaveMembership(name, me, False), done)

    # -- topics ----------------------------------------------------------------------------------

    def topic(self, session: Session, request: w.Topic) -> None:
        chat, name = self.chat, request.room
        code = chat.rooms.access(name, session.account.id)
        if code is not None:
            return chat.error(session, code, request.id)
        record = chat.rooms.records.get(name)
        if record is None or record.owner != session.account.id:  # general's is the operator's
            return chat.error(session, "forbidden", request.id, "only the room's owner sets its topic")
        changed = dataclasses.replace(record, topic=request.text)
        self.save_topic(session, changed, session.username, request.id)

    def save_topic(self, session: Session | None, record: RoomRecord, by: str, rid: str | None,
                   stored: Callable[[Exception | None], None] | None = None) -> None:
        """Store a topic, then every member's version 2 sessions get `topic` (general's: each
        version 2 session privately; its log carries version 1 frames only). `stored` (the
        operator's console, which has no session to answer) hears how the write went."""
        chat = self.chat

        def done(result: object) -> None:
            if stored is not None:
                stored(result if isinstance(result, Exception) else None)
            if isinstance(result, Exception):
                if session is not None:
                    chat.error(session, "unavailable", rid)
                return
            frame = p.encode_payload(w.topic(record.name, record.topic, by))
            if record.name == GENERAL:
                chat.rooms.general_topic = record.topic
                return chat.tell_v2(frame)
            chat.rooms.add_room(record)
            chat.broadcast(frame, record.name)

        setter = session.account.id if session is not None else ""
        chat.fx.submit(session.sid if session is not None else None, SaveRoom(record, setter), done)

    def set_topic(self, name: str, text: str,
                  stored: Callable[[Exception | None], None] | None = None) -> None:
        """The operator's `topic ROOM TEXT`: ValueError for a bad text or no such room;
        `stored` hears whether it reached the disk (the members are told once it has)."""
        if not w.valid_topic(text):
            raise ValueError(f"a topic is {w.TOPIC_RULES}")
        rooms = self.chat.rooms
        if name == GENERAL:
            record = RoomRecord(GENERAL, False, None, text, p.timestamp(self.chat.wall))
        elif name in rooms.records:
            record = dataclasses.replace(rooms.records[name], topic=text)
        else:
            raise ValueError(f"no such room: {name!r}")
        self.save_topic(None, record, "operator", None, stored)


def rooms_table(chat: Chat) -> list[tuple[str, str, str | None, int, int, int]]:
    """The operator's `rooms`: (room, kind, owner, members, online members, last seq), by name."""
    rooms = chat.rooms
    rows = []
    for name in rooms.names:
        record = rooms.records.get(name)
        online = len(chat.presence) if name == GENERAL else len(rooms.online.get(name, ()))
        kind = "private" if record and record.private else "public"
        members = rooms.member_count(name, len(chat.accounts))
        last_seq = chat.journals.journal(name).last_seq
        rows.append((name, kind, owner_name(chat.accounts, record), members, online, last_seq))
    return rows
