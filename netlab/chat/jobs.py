"""What the chat asks to be done off the loop, as data: it names the job, the loop runs it.

Sans-IO: the chat never holds a closure over the crypto or the store's write
path. It submits one of these (`Effects.submit`); the loop's workers run it
(`netlab/loop/jobs.py`) and the chat's `done` gets the result, or what the
work raised, on the loop thread.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VerifyPassword:
    """Does `password` match `password_hash`? None: no such account, and a dummy hash is
    checked instead, so an unknown name costs what a wrong password costs. Result: bool."""

    password_hash: str | None
    password: str


@dataclass(frozen=True, slots=True)
class CreateAccount:
    """Hash the password and store the account. Result: the `Account`, USERNAME_TAKEN if
    the name was stored meanwhile, or the OSError that kept it off the disk."""

    username: str
    password: str
    ip: str


@dataclass(frozen=True, slots=True)
class ReadPage:
    """A page of history from the disk (older than the in-memory window). Result: (records,
    more), as `History.page` gives them."""

    limit: int
    before: int | None
    after: int | None


Job = VerifyPassword | CreateAccount | ReadPage

#: CreateAccount's result when another registration of the name was stored first.
USERNAME_TAKEN = "username_taken"
