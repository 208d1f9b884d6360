"""Bus mode: another node's changes, applied to this node's chat as its own would be.

A node that changes the chat's state (a room, a membership, a marker, a ban, a deletion,
who is online) stores the change in the bus with an event, and answers its own session
from the job's `done` as in the embedded mode. Every other node reads the event from the
fan-out stream in the one order Redis gave it and applies it here: its in-memory state
changes, and its own sessions are told what the change's own node told its sessions
(`joined`, `member`, `left`, `topic`, `read`, `deleted`, `join` and `leave`). Applying an
event twice changes nothing (a starting node may read events its snapshot already holds).
Sans-IO: events come in as decoded dicts (netlab/bus/state.py writes them).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from netlab import wire as p
from netlab.store.room_records import GENERAL, Key, Restriction, RoomRecord
from netlab.wire import rooms as w

if TYPE_CHECKING:
    from netlab.chat.journal import Journal
    from netlab.chat_core import Chat
    from netlab.store.records import Account

log = logging.getLogger("netlab.chat")


class Replica:
    """Applies other nodes' events (`apply`) and presence to the chat (loop thread)."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    def apply(self, event: dict[str, Any], node: str, room: RoomRecord | None = None,
              key: Key | None = None, restriction: Restriction | None = None) -> None:
        """One event of another node; `room`, `key` and `restriction` are its parts the bus
        decoded (a room's row, a key's text, a ban's row)."""
        kind = event["t"]
        if kind == "room" and room is not None:
            self._room(room, event.get("by", ""))
        elif kind == "member":
            self._member(event["room"], event["id"], bool(event["member"]))
        elif kind == "marker" and key is not None:
            self._marker(key, event["id"], int(event["seq"]))
        elif kind == "restriction" and restriction is not None:
            self.chat.moderation.replicated(restriction, bool(event["lifted"]))
        elif kind == "deleted" and key is not None:
            self._deleted(key, int(event["seq"]))
        elif kind == "online":
            self.online(event["id"], node)
        elif kind == "offline":
            self.offline(event["id"], node)
        elif kind == "notice":
            self.chat.notice(event["text"], everywhere=False)
        elif kind == "kick" and (account := self.chat.accounts.by_id(event["id"])) is not None:
            self.chat.moderation.kick(account.username, event["text"] or None, everywhere=False)

    # -- rooms ---------------------------------------------------------------------------------

    def _room(self, record: RoomRecord, by: str) -> None:
        chat, rooms = self.chat, self.chat.rooms
        if record.name == GENERAL:
            if record.topic != rooms.general_topic:
                rooms.general_topic = record.topic
                chat.tell_v2(p.encode_payload(w.topic(GENERAL, record.topic, self._name(by))))
            return
        before = rooms.records.get(record.name)
        rooms.add_room(record)
        if before is not None and before.topic != record.topic:
            chat.broadcast(p.encode_payload(w.topic(record.name, record.topic, self._name(by))), record.name)

    def removed(self, account: Account) -> None:
        """Another node removed the account (forgotten here already, so the `leave`s and the
        `offline` that follow on that node name nobody here): its sessions here end, it leaves
        its rooms and goes offline here as it does there."""
        chat, key = self.chat, account.username.lower()
        chat.end_sessions_without_account()
        for name in sorted(chat.rooms.rooms_of(account.id)):
            chat.rooms.set_member(name, account.id, False)
            chat.rooms.left_online(name, key)
            chat.broadcast(p.encode_payload(w.member(name, account.username, "left")), name)
        for node in chat.presence.nodes_of(account.username):
            self._left(account.username, node)

    def _name(self, account_id: str) -> str:
        account = self.chat.accounts.by_id(account_id) if account_id else None
        return account.username if account is not None else "operator"

    def _member(self, name: str, account_id: str, member: bool) -> None:
        chat, rooms = self.chat, self.chat.rooms
        account = chat.accounts.by_id(account_id)
        if name not in rooms.records or account is None or rooms.is_member(name, account_id) == member:
            return
        if member:
            return chat.room_requests.admit(name, account, joins=True)
        rooms.set_member(name, account_id, False)
        rooms.left_online(name, account.username.lower())
        frame = p.encode_payload(w.left(name))
        for sid in chat.v2_sessions(account.username):
            chat.fx.unsubscribe(sid, name)
            chat.fx.send(sid, frame)
        chat.broadcast(p.encode_payload(w.member(name, account.username, "left")), name)

    def _marker(self, key: Key, account_id: str, seq: int) -> None:
        chat = self.chat
        account = chat.accounts.by_id(account_id)
        if account is None or not chat.rooms.mark(key, account_id, seq):
            return
        if isinstance(key, tuple):
            other = chat.accounts.by_id(key[1] if key[0] == account_id else key[0])
            if other is None:
                return
            place = {"with": other.username}
        else:
            place = {"room": key}
        frame = p.encode_payload(w.read(seq, place))
        for sid in chat.v2_sessions(account.username):
            chat.fx.send(sid, frame)

    def _deleted(self, key: Key, seq: int) -> None:
        chat = self.chat
        journal = chat.journals.journal(key)
        if _deleted_already(journal, seq):
            return  # the event again: its `deleted` was told the first time
        journal.forget(seq)
        if not isinstance(key, tuple):
            return chat.talk.tell_deleted(key, seq, None, None)
        first, second = chat.accounts.by_id(key[0]), chat.accounts.by_id(key[1])
        if first is not None and second is not None:
            chat.talk.tell_deleted(key, seq, first.username, second)

    # -- presence --------------------------------------------------------------------------------

    def online(self, account_id: str, node: str) -> None:
        """The account has a session on another node now."""
        chat = self.chat
        account = chat.accounts.by_id(account_id)
        if account is not None and chat.presence.arrive_remote(account.username, node):
            chat.rooms.came_online(account.id, account.username.lower())
            chat.fx.broadcast(p.encode_payload(p.presence("join", account.username)), urgent=False)

    def offline(self, account_id: str, node: str) -> None:
        """The account's last session on another node ended."""
        account = self.chat.accounts.by_id(account_id)
        if account is not None:
            self._left(account.username, node)

    def node_gone(self, node: str) -> int:
        """Another node stopped (its presence expired: killed, or cut off): its users are
        offline unless they have sessions elsewhere. How many users it had."""
        names = self.chat.presence.on_node(node)
        for name in names:
            self._left(name, node)
        return len(names)

    def reconcile(self, node: str, account_ids: set[str], departures: bool = True) -> None:
        """Another node's online accounts as its presence hash lists them (the truth the events
        only announce early): whoever is missing arrives, whoever is not listed leaves (unless
        `departures` is False: a hash that may be rewriting itself)."""
        accounts = self.chat.accounts
        listed = {a.id for name in self.chat.presence.on_node(node) if (a := accounts.get(name)) is not None}
        for account_id in sorted(account_ids - listed):
            self.online(account_id, node)
        for account_id in sorted(listed - account_ids) if departures else ():
            self.offline(account_id, node)

    def _left(self, username: str, node: str) -> None:
        chat = self.chat
        name = chat.presence.depart_remote(username, node)
        if name is None:
            return
        account = chat.accounts.get(username)
        if account is not None:
            chat.rooms.went_offline(account.id, name.lower(), chat.now)
        chat.fx.broadcast(p.encode_payload(p.presence("leave", name)), urgent=False)


def _deleted_already(journal: Journal, seq: int) -> bool:
    """Whether the journal's window speaks for `seq` and no longer holds it (a message it
    delivered, then forgot). Outside the window, a deletion cannot be told from its repeat:
    it is told (once too often at worst)."""
    if seq > journal.last_seq or not journal.in_window(limit=1, after=seq - 1):
        return False
    return all(record.seq != seq for record in journal.page(limit=1, after=seq - 1)[0])
