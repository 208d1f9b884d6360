"""The chat's jobs (`netlab/chat/jobs.py`) carried out: hashes, account and room writes, disk pages.

Runs in the worker pools' threads; the only place where the chat's requests
meet the crypto and the store's write path. `on_disk` says which pool: disk
reads and deletions (which rewrite a record where pages read) have a pool of
their own, one thread, so that no number of them delays a login and a page
never reads a record half erased.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netlab.chat.jobs import (
    BAD_CREDENTIALS,
    CHANGED,
    USERNAME_TAKEN,
    ChangePassword,
    CreateAccount,
    DeleteMessage,
    Job,
    ReadPage,
    SaveMembership,
    SaveRestriction,
    SaveRoom,
    VerifyPassword,
)
from netlab.crypto import dummy_hash, hash_password, verify_password
from netlab.loop.group_commit import Journals
from netlab.store.accounts import Accounts, UsernameTaken

if TYPE_CHECKING:
    from netlab.bus.accounts import BusAccounts


def on_disk(job: Job) -> bool:
    return isinstance(job, ReadPage | DeleteMessage)


#: The jobs on accounts alone: the same on the data files and on a bus (`account_job`).
ACCOUNT_JOBS = (VerifyPassword, CreateAccount, ChangePassword)


def account_job(job: VerifyPassword | CreateAccount | ChangePassword,
                accounts: Accounts | BusAccounts) -> Any:
    """A password checked, an account stored, a password changed: `Accounts` (clients.csv) and
    the bus's `BusAccounts` take the same calls, so this is the one place that does them."""
    if isinstance(job, VerifyPassword):
        # Unknown or malformed names verify against a dummy hash: same work, same timing.
        return verify_password(job.password_hash if job.password_hash is not None else dummy_hash(),
                               job.password)
    if isinstance(job, CreateAccount):
        try:
            return accounts.add(job.username, hash_password(job.password), job.ip)
        except UsernameTaken:
            return USERNAME_TAKEN
    if not verify_password(job.account.password_hash, job.password):
        return BAD_CREDENTIALS
    try:
        accounts.set_password(job.account, hash_password(job.new_password))
    except KeyError:  # removed meanwhile (`clear file`, or another node's `remove`)
        return BAD_CREDENTIALS
    return CHANGED


def author_name(accounts: Accounts | BusAccounts, author: str | None) -> str | None:
    """A deletion's author as messages name it (a username); the core may name it by id."""
    by_id = accounts.by_id(author) if author is not None else None
    return by_id.username if by_id is not None else author


def run(job: Job, accounts: Accounts, journals: Journals) -> Any:
    """Do the job (worker thread); what it raises is the caller's to hand on."""
    if isinstance(job, VerifyPassword):
        return account_job(job, accounts)
    if isinstance(job, ReadPage):
        return journals.disk_page(job.key, limit=job.limit, before=job.before, after=job.after)
    try:
        return _write(job, accounts, journals)
    except OSError as exc:
        return exc


def _write(job: Job, accounts: Accounts, journals: Journals) -> Any:
    """The jobs that change a file: each is on disk (fsync) when it returns."""
    if isinstance(job, ACCOUNT_JOBS):
        return account_job(job, accounts)
    if isinstance(job, SaveRoom):
        journals.history_of(job.room.name, create=True)  # the room's file, made durably
        return journals.store.rooms.save_room(job.room)
    if isinstance(job, SaveRestriction):
        return journals.store.moderation.save(job.restriction, lifted=job.lifted)
    if isinstance(job, SaveMembership):
        return journals.store.rooms.save_membership(job.room, job.account_id, job.member)
    assert isinstance(job, DeleteMessage)
    return journals.erase(job.key, job.seq, author_name(accounts, job.author))
