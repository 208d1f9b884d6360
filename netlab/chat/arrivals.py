"""Bus mode's half of `say`: the message published, then delivered when it arrives.

In bus mode the chat does not number a message: the bus does (netlab/bus/publish.py). A
`say` that passed every check becomes a `Publish` job; the bus's answer only releases the
session (or answers `unavailable`, or repeats a say stored before). The message itself,
the sender's echo included, is delivered when the node's reader brings it back from the
fan-out stream (`arrived`), on every node alike, so every session sees one order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netlab import wire as p
from netlab.chat.jobs import Publish

if TYPE_CHECKING:
    from netlab.chat.sessions import Session
    from netlab.chat.talk import Talk
    from netlab.store.records import Record
    from netlab.store.room_records import Key


def publish(talk: Talk, session: Session, request: p.Say, key: Key, place: dict, ts: str,
            keyed: bool) -> None:
    """Hand the message to the bus; its answer releases the session (or answers it)."""
    chat, me = talk.chat, session.account
    job = Publish(key, ts, session.username, request.text, me.id, request.id if keyed else None,
                  None if keyed else request.id, chat.journals.journal(key).last_seq)

    def done(result: object) -> None:
        if isinstance(result, Exception):
            return chat.error(session, "unavailable", request.id)
        seq, new = result.seq, result.new  # type: ignore[attr-defined]
        if not new and session.sid in chat.sessions:
            talk.repeat(session, key, seq, request.id, place)  # type: ignore[arg-type]

    chat.fx.submit(session.sid, job, done)


def arrived(talk: Talk, key: Key, record: Record, account_id: str, say_id: str) -> None:
    """A message from the fan-out stream (this node's or another's), delivered as a local
    `say` is; one delivered already (a repeat read) is dropped by its journal."""
    chat = talk.chat
    if not chat.journals.journal(key).arrive(record):  # type: ignore[attr-defined]
        return
    if account_id and say_id:
        talk.ids.add(key, account_id, say_id, record.seq)
    other = None
    if isinstance(key, tuple):
        sender = chat.accounts.get(record.sender)
        other = chat.accounts.by_id(key[1] if sender is not None and sender.id == key[0] else key[0])
        if other is None:
            return  # an account removed meanwhile: nobody here to show it to
    frame = p.message(record.seq, record.ts, record.sender, record.text, say_id or None,
                      room=None if other is not None else key, to=other.username if other else None)
    talk.deliver(key, p.encode_payload(frame), record.sender, other)
