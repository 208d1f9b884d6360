"""clients.csv: the accounts, read at start-up, added to by worker threads.

Logins and addresses are encrypted and found by a blind index (netlab.crypto); a password is
an Argon2id hash. The loop thread only reads (`get`); registrations and `clear` run on other
threads and fsync before they return.
"""

from __future__ import annotations

import csv
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag

from netlab.crypto import KEY_ENV, KEY_FILE, Vault, create_key_file, new_key, read_key, warn_if_exposed
from netlab.files import StartupError, replace_durably
from netlab.store.records import CLIENTS_FILE, CLIENTS_HEADER, Account, csv_line
from netlab.wire import timestamp

log = logging.getLogger("netlab.store")


class UsernameTaken(KeyError):
    """register with a name that exists, case-insensitively."""


class Accounts:
    """Registered users: clients.csv on disk, a dict in memory.

    The dict is read from the loop thread without a lock and replaced or extended by worker
    threads under self._lock. That is safe in CPython: a dict lookup by key and a rebinding of
    self._by_name are each atomic, so a reader sees an account entirely or not at all, and
    add() puts the account in the dict only after its row is on disk.
    """

    def __init__(self, path: Path, vault: Vault, accounts: dict[str, Account], torn_at: int | None):
        self._path = path
        self._vault = vault
        self._by_name = accounts  # username.casefold() -> Account
        self._by_id = {account.id: account for account in accounts.values()}
        self._torn_at = torn_at  # where a torn last line starts; cut before the next add
        self._lock = threading.Lock()
        # What `load` left for `create_files`: a new key to write, or a key file whose
        # mode to check; and whether clients.csv is still to be made.
        self._new_key: bytes | None = None
        self._key_file_read = False
        self._unwritten_file = False

    @classmethod
    def load(cls, data_dir: Path, environ: Mapping[str, str] = os.environ) -> Accounts:
        """Read clients.csv with the key, or raise StartupError; creates nothing on disk.

        Decrypting every login is the key check; a file with no accounts accepts any key. A key
        or clients.csv that does not exist yet is made in memory, for `create_files` to write.
        """
        path = data_dir / CLIENTS_FILE
        found = read_key(data_dir, environ)
        try:
            data = path.read_bytes()
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))  # registrations go here
        except FileNotFoundError:
            data = b""
        except OSError as exc:
            raise StartupError(f"cannot write {path}: {exc.strerror or exc}") from exc
        rows, torn_at = parse_clients(data, path)
        require_key(found, rows, path)
        key, source = found or (new_key(), "")
        vault = Vault(key)
        accounts, problems = decode_accounts(rows, vault, path, source)
        if problems:
            raise StartupError(problems[0])
        loaded = cls(path, vault, accounts, torn_at)
        loaded._new_key = None if found else key
        loaded._key_file_read = found is not None and KEY_ENV not in environ
        loaded._unwritten_file = not data
        return loaded

    def create_files(self) -> None:
        """Write the key and clients.csv if `load` found them missing; warn about what it read."""
        data_dir = self._path.parent
        if self._new_key is not None or self._unwritten_file:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._new_key is not None:
            create_key_file(data_dir, self._new_key)
            self._new_key = None
            log.info("created a new key in %s", data_dir / KEY_FILE)
        if self._key_file_read:
            warn_if_exposed(data_dir)
        if self._unwritten_file:
            replace_durably(self._path, csv_line(CLIENTS_HEADER))
            self._unwritten_file = False
        if self._torn_at is not None:
            log.warning("%s: skipped a torn last line (a crash while registering)", self._path)

    @property
    def vault(self) -> Vault:
        """The key's subkeys (direct messages are encrypted under the same key as logins)."""
        return self._vault

    def get(self, username: str) -> Account | None:
        """Case-insensitive lookup; cheap (loop thread)."""
        return self._by_name.get(username.casefold())

    def add(self, username: str, password_hash: str, ip: str) -> Account:
        """Append one account and fsync it (worker thread); UsernameTaken if the name exists."""
        name = username.casefold()
        row = (
            self._vault.blind_index(username),
            self._vault.encrypt(username, "login"),
            password_hash,
            self._vault.encrypt(ip, "ip"),
            timestamp(time.time()),
        )
        line = csv_line(row)
        with self._lock:
            if name in self._by_name:
                raise UsernameTaken(username)
            with open(self._path, "r+b") as f:
                if self._torn_at is not None:
                    f.truncate(self._torn_at)
                    self._torn_at = None
                end = f.seek(0, os.SEEK_END)
                try:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    f.truncate(end)  # e.g. disk full: leave no partial row behind
                    raise
            account = Account(username, password_hash, self._vault.account_id(row[0], row[4]))
            self._by_id[account.id] = account
            self._by_name[name] = account
        return account

    def by_id(self, account_id: str) -> Account | None:
        """The account with this opaque id (as the rooms' files name it); cheap (loop thread)."""
        return self._by_id.get(account_id)

    def set_password(self, account: Account, password_hash: str) -> None:
        """Store a new password hash (worker thread): clients.csv rewritten durably, then the
        Account updated in place. KeyError if the account is no longer stored (`clear file`)."""
        def new_hash(row: list[str]) -> list[str]:
            row[2] = password_hash
            return row

        with self._lock:
            self._rewrite(account, new_hash)
            account.password_hash = password_hash

    def remove(self, account: Account) -> None:
        """Take one account out (the console's `remove`, any thread but the loop's): clients.csv
        rewritten durably without its row, then the name free. KeyError if it is gone already."""
        with self._lock:
            self._rewrite(account, lambda row: None)
            by_name = dict(self._by_name)  # replaced, not changed: the loop reads it unlocked
            del by_name[account.username.casefold()]
            self._by_name = by_name
            self._by_id = {key: value for key, value in self._by_id.items() if key != account.id}

    def _rewrite(self, account: Account, change: Callable[[list[str]], list[str] | None]) -> None:
        """clients.csv replaced atomically and durably with `change` made to the account's row
        (None: the row goes). Under the lock; KeyError if the account is no longer stored."""
        if self._by_id.get(account.id) is not account:
            raise KeyError(account.username)
        index = self._vault.blind_index(account.username)
        data = self._path.read_bytes()[: self._torn_at]  # a torn last line is cut here too
        rows, _torn_at = parse_clients(data, self._path)
        lines = [csv_line(CLIENTS_HEADER)]
        for _line, row in rows:
            kept = change(row) if row[0] == index else row
            if kept is not None:
                lines.append(csv_line(kept))
        replace_durably(self._path, b"".join(lines))
        self._torn_at = None

    def clear(self) -> int:
        """Move clients.csv to clients.csv.bak, start an empty one; return how many were removed.

        With no accounts it changes nothing: a second `clear file` must not replace the
        backup of the accounts the first one removed with an empty file.
        """
        with self._lock:
            removed = len(self._by_name)
            if not removed:
                return 0
            os.replace(self._path, self._path.with_name(self._path.name + ".bak"))
            replace_durably(self._path, csv_line(CLIENTS_HEADER))  # also fsyncs the directory
            self._by_name = {}
            self._by_id = {}
            self._torn_at = None
        return removed

    def __len__(self) -> int:
        return len(self._by_name)


def parse_clients(data: bytes, path: Path) -> tuple[list[tuple[int, list[str]]], int | None]:
    """(line number, fields) of each account row, and where a torn last line starts (if any).

    No field can hold a line break, so lines are records; a last line without its newline is
    the one append a crash cut short.
    """
    if not data:
        return [], None
    lines = data.split(b"\n")
    torn_at = None
    if lines[-1]:
        torn_at = len(data) - len(lines[-1])
    lines.pop()
    try:
        rows = [next(csv.reader([line.decode()])) for line in lines]
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise StartupError(f"{path} is not a CSV file") from exc
    if not rows or tuple(rows[0]) != CLIENTS_HEADER:
        raise StartupError(f"{path} does not start with the header {','.join(CLIENTS_HEADER)}")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(CLIENTS_HEADER):
            raise StartupError(f"{path} line {number} does not have {len(CLIENTS_HEADER)} fields")
    return list(enumerate(rows[1:], start=2)), torn_at


def require_key(found: tuple[bytes, str] | None, rows: list[tuple[int, list[str]]], path: Path) -> None:
    """StartupError when accounts exist but no key does: a new key would lock them out for good."""
    if found is None and rows:
        raise StartupError(
            f"{path} holds {len(rows)} account{'s' if len(rows) > 1 else ''} but no key was found: "
            f"restore {path.parent / KEY_FILE} or set {KEY_ENV}"
        )


def decode_accounts(
    rows: list[tuple[int, list[str]]], vault: Vault, path: Path, source: str
) -> tuple[dict[str, Account], list[str]]:
    """The accounts in clients.csv's rows, and one line for each row that is wrong.

    Start-up refuses with the first line, `netlab chat check` lists them all. A row that does
    not decrypt ends the reading: the key, not the row, is the likely fault. A duplicate is
    named by its decrypted login, on the terminal of the operator who holds the key.
    """
    accounts: dict[str, Account] = {}
    first_line: dict[str, int] = {}
    problems = []
    for line_no, (index, login, password_hash, _ip, created) in rows:
        try:
            username = vault.decrypt(login, "login")
        except (InvalidTag, ValueError):
            problems.append(
                f"the key in {source} does not match {path} (line {line_no} does not "
                "decrypt); use the key these accounts were made with"
            )
            break
        name = username.casefold()
        if vault.blind_index(username) != index:
            problems.append(f"{path} line {line_no}: login_index does not match its login")
        elif name in accounts:
            problems.append(
                f"{path} line {line_no}: a second account {username!r} (line {first_line[name]} has it)"
            )
        else:
            accounts[name] = Account(username, password_hash, vault.account_id(index, created))
            first_line[name] = line_no
    return accounts, problems
