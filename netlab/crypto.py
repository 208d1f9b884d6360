"""Key file, authenticated encryption, blind index and password hashing.

Everything secret that the chat server keeps goes through here, so that one file answers
"how is a login protected on disk?" and "where does a password get hashed?".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import functools
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from netlab.files import StartupError, fsync_dir

log = logging.getLogger(__name__)

KEY_ENV = "NETLAB_KEY"
KEY_FILE = "netlab.key"
KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16


def _decode_key(text: str, source: str) -> bytes:
    """Strictly decode the urlsafe base64 key text; padding may be left off."""
    text = text.strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise StartupError(
            f"{source} is not a netlab key (urlsafe base64 of {KEY_BYTES} bytes); fix or remove it"
        )
    return key


def read_key(data_dir: Path, environ: Mapping[str, str] = os.environ) -> tuple[bytes, str] | None:
    """The master key and where it came from (for messages), or None when there is none.

    NETLAB_KEY wins whenever it is set (even set empty, which is an error rather than a silent
    fallback to the file), and then the file is not looked at.
    """
    if KEY_ENV in environ:
        source = f"the environment variable {KEY_ENV}"
        return _decode_key(environ[KEY_ENV], source), source
    path = data_dir / KEY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StartupError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return _decode_key(text, str(path)), str(path)


def warn_if_exposed(data_dir: Path) -> None:
    """Warn about a key file others may read (once the key has proved right)."""
    path = data_dir / KEY_FILE
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s is readable by group or others (mode %o); chmod 600 it", path, mode)


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def create_key_file(data_dir: Path, key: bytes) -> None:
    """Create data_dir/netlab.key (mode 0600) holding `key`; never overwrite one.

    The key is written and fsynced under a temporary name, then hard-linked into place: link()
    fails if netlab.key exists, and a crash can never leave an empty or partial netlab.key
    (which would block every later start), only a stray temporary file.
    """
    path = data_dir / KEY_FILE
    tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # a strange umask cannot take our own read bit away
            os.write(fd, base64.urlsafe_b64encode(key) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            msg = f"{path} appeared while starting; is another server running?"
            raise StartupError(msg) from exc
    finally:
        tmp.unlink()
    fsync_dir(data_dir)


class Vault:
    """Holds subkeys derived from the master key with HKDF-SHA256.

    Separate subkeys for encryption and for the blind index, so that neither use can leak
    anything about the other.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a netlab key is {KEY_BYTES} bytes")
        self._aead = AESGCM(self._derive(key, b"netlab v1 encryption"))
        self._index_key = self._derive(key, b"netlab v1 login index")
        self._id_key = self._derive(key, b"netlab v2 account id")
        self._pair_key = self._derive(key, b"netlab v2 bus conversation")
        self._address_tag_key = self._derive(key, b"netlab v1 log address tag")

    @staticmethod
    def _derive(key: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)

    def encrypt(self, plaintext: str, context: str) -> str:
        """AES-256-GCM with a random nonce, as urlsafe base64 of nonce || ciphertext || tag.

        `context` (the column, e.g. "login" or "ip") is authenticated as associated data, so a
        token copied into another column fails to decrypt instead of being misread.
        """
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str, context: str) -> str:
        """Inverse of encrypt(); raises cryptography's InvalidTag or ValueError on a bad token."""
        raw = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise ValueError("token too short")
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        return self._aead.decrypt(nonce, sealed, context.encode()).decode()

    def blind_index(self, login: str) -> str:
        """HMAC-SHA256 of the case-folded login: same for Alice and alice, opaque sans key."""
        return hmac.new(self._index_key, login.casefold().encode(), hashlib.sha256).hexdigest()

    def conversation_token(self, pair: str) -> str:
        """A conversation's name in a bus (32 hex digits): the same on every node with the key,
        showing nothing of its two accounts (netlab/bus/names.py)."""
        return hmac.new(self._pair_key, pair.encode(), hashlib.sha256).hexdigest()[:32]

    def address_tag(self, ip: str) -> str:
        """How the log names a client address (netutil.canonical_ip's form): see address_tag."""
        return address_tag(self._address_tag_key, ip)

    def account_id(self, login_index: str, created: str) -> str:
        """An account's opaque id (32 hex digits): one registration, not one name.

        Keyed on clients.csv's row (its login_index and its created time) under a subkey of
        its own, so it shows nothing of the login, and a name removed and registered again
        (a new `created`) is a new account to the files that name accounts by id.
        """
        data = f"{login_index}\x00{created}".encode()
        return hmac.new(self._id_key, data, hashlib.sha256).hexdigest()[:32]


#: Base32 digits of a log's address tag: 50 bits, so two addresses among a million seen share
#: a tag about once in a billion logs, and the tag stays short enough to read and grep.
ADDRESS_TAG_DIGITS = 10


def address_tag(tag_key: bytes, ip: str) -> str:
    """A client address as log lines name it: `ip-` and lowercase base32 of its HMAC-SHA256.

    No plaintext address goes into a log (the standard), yet one connection's lines can
    still be followed and one address's connections grouped; the keyed hash cannot be
    reversed by trying the few billion IPv4 addresses without the key, and the operator,
    who has it, finds a known address with `netlab chat log-tag ADDRESS`.
    """
    digest = hmac.new(tag_key, ip.encode(), hashlib.sha256).digest()
    return "ip-" + base64.b32encode(digest).decode("ascii")[:ADDRESS_TAG_DIGITS].lower()


# Argon2id via argon2-cffi, which releases the GIL while hashing, so the hashing pool really
# runs beside the event loop (cryptography's Argon2id holds the GIL and would stall the loop).
# Parameters: OWASP's Argon2id minimum, m=19 MiB, t=2, p=1; they are stored in each PHC string.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)

#: glibc's mallopt parameter number for the mmap threshold.
_M_MMAP_THRESHOLD = -3


def _unmap_hash_memory() -> None:
    """Keep each Argon2 buffer (19 MiB) an mmap of its own, unmapped when freed.

    After the first such buffer is freed, glibc raises its mmap threshold to
    that size, so later buffers come from each worker thread's heap, and the
    heap keeps them in the process's memory for good: measured, 38 MiB held
    by two hashing threads. A fixed threshold turns that adjustment off.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 1 << 20)


_unmap_hash_memory()


def hash_password(password: str) -> str:
    """Salted Argon2id hash as a PHC string (``$argon2id$v=19$m=19456,t=2,p=1$...``); slow."""
    return _hasher.hash(password)


def verify_password(encoded: str, password: str) -> bool:
    """True iff `password` matches; False (never an exception) on mismatch or a malformed hash."""
    try:
        return _hasher.verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """A hash to verify against for an unknown user, so that costs what a wrong password costs.

    Computed once, when the chat starts (chat_core.Chat), not at import: that would add
    ~25 ms to every command, the clients' included.
    """
    return hash_password(secrets.token_urlsafe(16))
