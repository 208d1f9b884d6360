"""Where the chat's messages are kept, as the chat sees it: seq, stage, pages.

The journal numbers messages (the next is `last_seq + 1`), keeps each one the
chat accepts (`stage`: history pages see it at once) and has it on disk
before anything broadcast after it is sent (its implementation commits at the
end of each loop pass, in one write, fsynced by group commit). The CSV files
are the first implementation (`loop/group_commit.py` over `netlab.store.history.History`); a
bus that assigns seq itself goes behind the same interface.

Every room and direct conversation has a journal of its own (its own seq), and `Journals`
hands them out by key (`store.room_records.Key`: a room's name, or a conversation's pair
of account ids) and keeps the read markers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from netlab.store.records import Record
    from netlab.store.room_records import Key


class Journal(Protocol):
    #: True when messages are numbered elsewhere (a bus): `say` publishes a `Publish` job and
    #: the message is delivered on its arrival (`arrive`), never staged.
    shared: bool

    @property
    def last_seq(self) -> int:
        """The seq of the newest message kept (staged or committed); 0 before the first."""

    def stage(self, record: Record, say_id: tuple[str, str] | None = None) -> None:
        """Keep a message (its seq is last_seq + 1): committed before the loop sends anything
        queued after it, visible to `page` at once. `say_id` (account id, the say's id) is
        committed with it, in the same pass: a restart finds it (chat/say_ids.py)."""

    def in_window(self, *, limit: int, before: int | None = None, after: int | None = None) -> bool:
        """Whether `page` answers from memory (cheap, on the loop); else a `ReadPage` job."""

    def page(self, *, limit: int, before: int | None = None,
             after: int | None = None) -> tuple[list[Record], bool]:
        """Messages as `History.page` gives them, staged ones included."""

    def commit(self) -> None:
        """Write what is staged now (before a job must find it on disk, e.g. a deletion)."""

    def forget(self, seq: int) -> None:
        """A deleted message: drop it from the in-memory window (its seq stays used)."""


class Journals(Protocol):
    """The journals of every room and conversation, and the read markers."""

    def journal(self, key: Key) -> Journal:
        """The journal of a room or conversation, made on first use (a room's file lazily)."""

    def mark(self, key: Key, account_id: str, seq: int) -> None:
        """A read marker moved forward: staged, written with the pass's commit, fsynced by group
        commit."""
