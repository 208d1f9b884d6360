"""Messages and their pages: `say`, `history`, `users`, `read` and `delete`, in both versions.

A version 1 session talks in general only and its answers carry no `room`; a version 2
session names a room (`general` by default) or another account (`to`, `with`), and every
answer repeats which. A room's message is encoded once and broadcast to the room's log; a
direct message is one frame sent to the two accounts' version 2 sessions. Nothing on a
message's way loops over a room's members or over rooms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from netlab import wire as p
from netlab.chat.arrivals import publish
from netlab.chat.jobs import DELETED, FORBIDDEN, MISSING, DeleteMessage, ReadPage
from netlab.chat.moderation import MUTE
from netlab.chat.presence import names_page
from netlab.chat.say_ids import SayIds
from netlab.store.records import Record
from netlab.store.room_records import GENERAL, Key, SayId, conversation
from netlab.wire import rooms as w

if TYPE_CHECKING:
    from netlab.chat.sessions import Session
    from netlab.chat_core import Chat
    from netlab.store.records import Account

#: A request's target: its journal's key, the `room`/`with` its answers repeat (None: version
#: 1), and the other account of a conversation.
Target = tuple[Key, dict | None, "Account | None"]


def history_page(records: list[Record], more_before: bool, max_frame: int,
                 keep_newest: bool = True, place: dict | None = None) -> p.Payload:
    """A `history` payload that fits max_frame, cutting the oldest (or newest) messages if needed."""
    items = [r.as_dict() for r in records]
    if keep_newest:
        items.reverse()

        def build(chosen: list) -> dict:
            return p.history_reply(chosen[::-1], more_before or len(chosen) < len(items), place)
    else:
        def build(chosen: list) -> dict:
            return p.history_reply(chosen, more_before or len(chosen) < len(items), place)

    frame, _ = p.fit_items(items, build, max_frame)
    return p.encode_payload(frame)


class Talk:
    """The chat's message requests; state of its own: the idempotency keys of `say`."""

    def __init__(self, chat: Chat, say_ids: dict[Key, list[SayId]] | None = None) -> None:
        self.chat = chat
        self.ids = SayIds(say_ids)

    def handlers(self) -> dict[type, Any]:
        return {p.Say: self.say, p.History: self.history, p.Users: self.users, w.Read: self.read,
                w.Delete: self.delete}

    @staticmethod
    def home(session: Session) -> dict | None:
        """What general's answers repeat: `room` for version 2, nothing for version 1."""
        return {"room": GENERAL} if session.version >= 2 else None

    def target(self, session: Session, room: str, username: str | None, rid: str | None) -> Target | None:
        """Where a request goes; None once an error (no_such_user, no_such_room, not_member)
        has answered it."""
        chat, me = self.chat, session.account
        if session.version < 2:
            return GENERAL, None, None
        if username is not None:
            other = chat.accounts.get(username) if p.valid_username(username) else None
            if other is None:
                chat.error(session, "no_such_user", rid)
                return None
            return conversation(me.id, other.id), {"with": other.username}, other
        code = chat.rooms.access(room, me.id)
        if code is not None:
            chat.error(session, code, rid)
            return None
        return room, {"room": room}, None

    def last_seq(self, key: Key) -> int:
        """A room's or conversation's last seq; a conversation never written to has no journal."""
        if isinstance(key, tuple) and key[1] not in self.chat.rooms.conversations(key[0]):
            return 0
        return self.chat.journals.journal(key).last_seq

    # -- say ------------------------------------------------------------------------------

    def say(self, session: Session, request: p.Say) -> None:
        chat = self.chat
        if (muted := chat.moderation.refusal(MUTE, session.account.id)) is not None:
            return chat.error(session, "muted", request.id, muted)  # nothing stored or sent
        target = self.target(session, request.room, request.to, request.id)
        if target is None:
            return
        key, place, other = target
        journal = chat.journals.journal(key)
        me = session.account
        # Idempotency keys are version 2's only: a version 1 session pays nothing for them.
        keyed = request.id is not None and session.version >= 2
        if keyed:
            first = self.ids.seen(key, me.id, request.id, journal.last_seq)
            if first is not None:
                return self.repeat(session, key, first, request.id, place)
        seq, ts = journal.last_seq + 1, p.timestamp(chat.wall)
        frame = p.message(seq, ts, session.username, request.text, request.id, room=request.room,
                          to=None if other is None else other.username)
        payload = p.encode_payload(frame)
        if len(payload) > chat.config.max_frame:  # max_frame bounds the payload, whatever the codec
            # Before the flood control: its bucket counts accepted requests (PROTOCOL.md).
            return chat.error(session, "bad_request", request.id, "the message would not fit in one frame")
        if other is not None and not self._may_talk(me, other):
            return chat.error(session, "forbidden", request.id,
                              f"an account has at most {chat.config.max_conversations} conversations")
        if chat.config.rate_limit and not session.take_token(chat.now):
            return chat.error(session, "rate_limited", request.id, "you are sending too fast")
        if journal.shared:
            return publish(self, session, request, key, place, ts, keyed)
        say_id = (me.id, request.id) if keyed else None
        journal.stage(Record(seq, ts, session.username, request.text), say_id)
        if keyed:
            self.ids.add(key, me.id, request.id, seq)
        self.deliver(key, payload, session.username, other)

    def deliver(self, key: Key, payload: p.Payload, sender: str, other: Account | None) -> None:
        """A message kept: to its room's log, or to both accounts' version 2 sessions."""
        chat = self.chat
        chat.messages_in += 1
        if other is None:
            chat.broadcast(payload, key)  # type: ignore[arg-type]
            chat.deliveries += chat.subscribers if key == GENERAL else len(chat.rooms.online.get(key, ()))
            return
        chat.rooms.add_conversation(key)  # type: ignore[arg-type]
        recipients = set(chat.v2_sessions(sender)) | set(chat.v2_sessions(other.username))
        for sid in recipients:
            chat.fx.send(sid, payload)
        chat.deliveries += len(recipients)

    def _may_talk(self, me: Account, other: Account) -> bool:
        """A new conversation only while both accounts have room for one more."""
        rooms, limit = self.chat.rooms, self.chat.config.max_conversations
        known = rooms.conversations(me.id)
        return other.id in known or (len(known) < limit and len(rooms.conversations(other.id)) < limit)

    def repeat(self, session: Session, key: Key, seq: int, rid: str, place: dict) -> None:
        """A `say` sent again: this session alone gets the first one's `message` again (or
        `deleted`, if it was deleted since)."""

        def resend(records: list[Record], _more: bool = False) -> None:
            if not records or records[0].seq != seq:
                return self.chat.fx.send(session.sid, p.encode_payload(w.deleted(seq, place)))
            first = records[0]
            where = {"to": place["with"]} if "with" in place else place
            frame = p.message(first.seq, first.ts, first.sender, first.text, rid, **where)
            self.chat.fx.send(session.sid, p.encode_payload(frame))

        def resend_page(result: object) -> None:
            if not isinstance(result, Exception):
                resend(*result)  # type: ignore[misc]

        if seq > self.chat.journals.journal(key).last_seq:  # stored, not yet arrived here (bus)
            return self.chat.fx.submit(session.sid, ReadPage(1, None, seq - 1, key), resend_page)
        self._page(session, key, p.History(1, after=seq - 1, id=rid), resend)

    # -- history and users ----------------------------------------------------------------

    def history(self, session: Session, request: p.History) -> None:
        target = self.target(session, request.room, request.with_, request.id)
        if target is not None:
            self.send_history(session, request, target[0], target[1])

    def send_history(self, session: Session, request: p.History, key: Key, place: dict | None,
                     at_login: bool = False) -> None:
        """A page of history; at login general's newest history_size (the window holds that many)."""
        max_frame, newest = self.chat.config.max_frame, request.after is None

        def answer(records: list[Record], more: bool = False) -> None:
            if session.sid in self.chat.sessions:
                self.chat.fx.send(session.sid, history_page(records, more, max_frame, newest, place))

        if isinstance(key, tuple) and not self.last_seq(key):
            return answer([])
        if at_login:
            return answer(*self.chat.journals.journal(key).page(limit=request.limit))
        self._page(session, key, request, answer)

    def _page(self, session: Session, key: Key, request: p.History, answer: Any) -> None:
        """`answer(records, more)` with a page of a journal: from memory, or from the disk off the loop."""
        journal = self.chat.journals.journal(key)
        limit, before, after = request.limit, request.before, request.after
        if journal.in_window(limit=limit, before=before, after=after):
            return answer(*journal.page(limit=limit, before=before, after=after))

        def done(result: object) -> None:
            if isinstance(result, Exception):
                return self.chat.error(session, "bad_request", request.id, "history could not be read")
            answer(*result)

        self.chat.fx.submit(session.sid, ReadPage(limit, before, after, key), done)

    def users(self, session: Session, request: p.Users) -> None:
        chat = self.chat
        if session.version >= 2 and request.room != GENERAL:
            code = chat.rooms.access(request.room, session.account.id)
            if code is not None:
                return chat.error(session, code, request.id)
            online = chat.rooms.online.get(request.room, [])
            page = names_page(online, chat.presence.name, request.after, chat.config.users_page,
                              chat.config.max_frame, {"room": request.room})
            return chat.fx.send(session.sid, page)
        self.send_users(session, request)

    def send_users(self, session: Session, request: p.Users) -> None:
        """General's `users` page (everyone online)."""
        page = self.chat.presence.page(request.after, self.chat.config.users_page, self.home(session))
        self.chat.fx.send(session.sid, page)

    # -- read markers and deletion ----------------------------------------------------------

    def read(self, session: Session, request: w.Read) -> None:
        chat = self.chat
        target = self.target(session, request.room, request.with_, request.id)
        if target is None:
            return
        key, place, _ = target
        if request.seq > self.last_seq(key):
            return chat.error(session, "bad_request", request.id, "seq is past the last message")
        if not chat.rooms.mark(key, session.account.id, request.seq):
            return
        chat.journals.mark(key, session.account.id, request.seq)
        frame = p.encode_payload(w.read(request.seq, place))
        for sid in chat.v2_sessions(session.username):
            if sid != session.sid:
                chat.fx.send(sid, frame)

    def delete(self, session: Session, request: w.Delete) -> None:
        chat = self.chat
        target = self.target(session, request.room, request.with_, request.id)
        if target is None:
            return
        key, place, other = target
        if not 1 <= request.seq <= self.last_seq(key):
            return chat.error(session, "bad_request", request.id, "no message has this seq")

        def answer(result: object) -> None:
            if isinstance(result, Exception):
                return chat.error(session, "unavailable", request.id)
            if result == FORBIDDEN:
                return chat.error(session, "forbidden", request.id, "only its author deletes a message")
            if result == MISSING or result != DELETED:
                return chat.error(session, "bad_request", request.id, "no message has this seq")

        self.erase(session.sid, key, request.seq, session.username, other, answer)

    def erase(self, sid: int | None, key: Key, seq: int, author: str | None, other: Account | None,
              answer: Callable[[object], None]) -> None:
        """A message erased from its file (`DeleteMessage`, `author`'s only; None: the operator's),
        then from the journal's window and from every version 2 session that could see it;
        `answer` hears the job's result. One path for a `delete` request and the console's."""
        journal = self.chat.journals.journal(key)
        journal.commit()  # the job must find the message on disk

        def done(result: object) -> None:
            if result == DELETED:
                journal.forget(seq)
                self.tell_deleted(key, seq, author, other)
            answer(result)

        self.chat.fx.submit(sid, DeleteMessage(key, seq, author), done)

    def tell_deleted(self, key: Key, seq: int, author: str | None, other: Account | None) -> None:
        """Every version 2 session that could see the message gets `deleted`. General's log
        carries version 1 frames only, so there it goes to each version 2 session."""
        chat = self.chat
        if other is not None:
            for name, partner in {author: other.username, other.username: author}.items():
                frame = p.encode_payload(w.deleted(seq, {"with": partner}))
                for sid in chat.v2_sessions(name):
                    chat.fx.send(sid, frame)
        elif key == GENERAL:
            chat.tell_v2(p.encode_payload(w.deleted(seq, {"room": GENERAL})))
        else:
            chat.broadcast(p.encode_payload(w.deleted(seq, {"room": key})), key)  # type: ignore[arg-type]
