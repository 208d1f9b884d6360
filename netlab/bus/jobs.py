"""The chat's jobs (`netlab/chat/jobs.py`) carried out against the bus (bus mode's
`netlab/loop/jobs.py`): hashes as ever, and every write a Redis write with its event.

Run in the worker pools' threads; a Redis error is raised, and the chat answers the request
`unavailable` (nothing was stored, or nothing acknowledged). `Publish` is not here: the
node's writer thread sends those, pipelined (netlab/bus/threads.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netlab.bus import pages
from netlab.bus.records import record_of
from netlab.chat.jobs import (
    DELETED,
    FORBIDDEN,
    MISSING,
    ROOM_TAKEN,
    Announce,
    DeleteMessage,
    Job,
    ReadPage,
    SaveMembership,
    SaveRestriction,
    SaveRoom,
    VerifyPassword,
)
from netlab.crypto import dummy_hash, verify_password
from netlab.loop.jobs import ACCOUNT_JOBS, account_job, author_name

if TYPE_CHECKING:
    from netlab.bus.node import BusNode
    from netlab.store.records import Account


def run(job: Job, node: BusNode) -> Any:
    """Do the job (worker thread); what it raises is the caller's to hand on."""
    accounts, state = node.accounts, node.state
    if isinstance(job, VerifyPassword) and job.password_hash is None and job.username is not None:
        return _verify_unknown(job, node)
    if isinstance(job, ACCOUNT_JOBS):
        return account_job(job, accounts)
    if isinstance(job, ReadPage):
        stored, more = pages.page(state.client, state.bus_key(job.key), limit=job.limit, before=job.before,
                                  after=job.after)
        vault = accounts.vault
        return [r for seq, body in stored if (r := record_of(vault, job.key, seq, body)) is not None], more
    if isinstance(job, SaveRoom):
        return None if state.save_room(job.room, job.by, job.new) else ROOM_TAKEN
    if isinstance(job, SaveMembership):
        return state.save_membership(job.room, job.account_id, job.member)
    if isinstance(job, SaveRestriction):
        return state.save_restriction(job.restriction, job.lifted)
    if isinstance(job, DeleteMessage):
        return _delete(job, node)
    assert isinstance(job, Announce)
    return state.announce(job.kind, job.text, job.account)


def _verify_unknown(job: VerifyPassword, node: BusNode) -> Account | bool:
    """A login of a name this node has not heard of: registered on another node an instant ago
    (its event not here yet), or nobody's. One read of the bus by blind index, then one hash
    either way, so both cost the same."""
    account = node.accounts.find(job.username)  # type: ignore[arg-type]
    matched = verify_password(account.password_hash if account is not None else dummy_hash(), job.password)
    return account if matched and account is not None else False


def _delete(job: DeleteMessage, node: BusNode) -> str:
    """The message's author checked against the stored record, then the entry deleted."""
    body = node.state.read_message(job.key, job.seq)
    record = record_of(node.accounts.vault, job.key, job.seq, body) if body is not None else None
    if record is None:
        return MISSING
    author = author_name(node.accounts, job.author)
    if author is not None and record.sender != author:
        return FORBIDDEN
    return DELETED if node.state.delete_message(job.key, job.seq) else MISSING
