"""The chat's jobs (`netlab/chat/jobs.py`) carried out: hashes, account writes, disk pages.

Runs in the worker pools' threads; the only place where the chat's requests
meet the crypto and the store's write path. `on_disk` says which pool: disk
reads have a pool of their own, so that no number of them delays a login.
"""

from __future__ import annotations

from typing import Any

from netlab.chat.jobs import USERNAME_TAKEN, CreateAccount, Job, ReadPage, VerifyPassword
from netlab.crypto import dummy_hash, hash_password, verify_password
from netlab.store.accounts import Accounts, UsernameTaken
from netlab.store.history import History


def on_disk(job: Job) -> bool:
    return isinstance(job, ReadPage)


def run(job: Job, accounts: Accounts, history: History) -> Any:
    """Do the job (worker thread); what it raises is the caller's to hand on."""
    if isinstance(job, VerifyPassword):
        # Unknown or malformed names verify against a dummy hash: same work, same timing.
        return verify_password(job.password_hash if job.password_hash is not None else dummy_hash(),
                               job.password)
    if isinstance(job, CreateAccount):
        try:
            return accounts.add(job.username, hash_password(job.password), job.ip)
        except UsernameTaken:
            return USERNAME_TAKEN
        except OSError as exc:
            return exc
    return history.page(limit=job.limit, before=job.before, after=job.after)
