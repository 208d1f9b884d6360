"""`--bus URL`: where the bus is (CLI.md: `redis://HOST:PORT/DB`, or `rediss://` for TLS),
how to get in, and whether it answers.

Checked at start-up, before the server listens or touches its data directory: a bus that
cannot be reached, whose certificate does not verify or that refuses the password is one
clear line and exit status 2 (CLI.md), not a node that starts and then refuses every message.
Every client of the bus comes from `connect`, so every thread and command gets the same TLS
and password (redis-py reconnects with them after a Redis restart).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import redis

#: Redis' own defaults, for a URL that leaves them out (as redis-cli's `-u` does).
DEFAULT_PORT = 6379
DEFAULT_DB = 0
#: How long the start-up check waits for the bus to connect and answer PING: long enough for
#: a Redis across a LAN under load, short enough that a wrong address fails while the
#: operator still watches.
CHECK_TIMEOUT = 5.0
#: The bus's password and ACL user come from the environment, never the command line (`ps`).
PASSWORD_ENV = "NETLAB_BUS_PASSWORD"
USER_ENV = "NETLAB_BUS_USER"


@dataclass(frozen=True, slots=True)
class BusAddress:
    host: str
    port: int
    db: int
    tls: bool = False
    #: With tls: the PEM file of the CA that signed the bus's certificate (`--bus-ca`), trusted
    #: besides the system's.
    ca: Path | None = None

    @property
    def url(self) -> str:
        """The URL as logged and shown: it never holds a password (none is ever in it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"


def parse_bus_url(text: str) -> BusAddress:
    """`redis://HOST[:PORT][/DB]` or `rediss://...` (TLS); ValueError with a sentence saying
    what is wrong.

    No user or password in the URL: a command line shows in `ps` to every local user, and a
    config file's value would end up in logs that echo the URL (PASSWORD_ENV instead)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:  # a port that is not a number or out of range
        raise ValueError(f"{text!r} is not a bus URL: {exc}") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{text!r} is not a bus URL: it must start with redis:// (or rediss:// for TLS)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"a bus URL holds no user or password (they would show in ps and in logs): "
                         f"set {PASSWORD_ENV} (and {USER_ENV}) instead")
    if not parts.hostname:
        raise ValueError(f"{text!r} names no host: redis://HOST:PORT/DB")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r}: a bus URL has no query or fragment")
    path = parts.path.lstrip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise ValueError(f"{text!r}: the database must be a number (redis://HOST:PORT/DB)")
    if port == 0:
        raise ValueError(f"{text!r}: port 0 is no bus's port")
    return BusAddress(parts.hostname, port or DEFAULT_PORT, int(path) if path else DEFAULT_DB,
                      tls=parts.scheme == "rediss")


def connect(address: BusAddress, timeout: float) -> redis.Redis:
    """A client of the bus, with redis-py's own retries off: a command whose answer was lost
    may have been carried out, so resending it is the caller's decision (a publish is resent
    only with its idempotency key; else the answer is `unavailable`). `timeout` bounds a
    connect and a reply (it must exceed the reader's XREAD BLOCK).

    The user and password are read from the environment here, so no caller holds them; over
    TLS the certificate and its host name are verified (TLS 1.2 or newer)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    tls = {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True,
           "ssl_ca_certs": str(address.ca) if address.ca is not None else None,
           "ssl_min_version": ssl.TLSVersion.TLSv1_2} if address.tls else {}
    return redis.Redis(host=address.host, port=address.port, db=address.db, retry=Retry(NoBackoff(), 0),
                       socket_connect_timeout=timeout, socket_timeout=timeout,
                       username=os.environ.get(USER_ENV) or None,
                       password=os.environ.get(PASSWORD_ENV) or None, **tls)


def unreachable(address: BusAddress, timeout: float = CHECK_TIMEOUT) -> str | None:
    """Why the bus does not answer (connect, TLS, log in, select its database, PING), or None
    if it does. redis-py's messages hold no password; ours name the variable, not its value."""
    import redis

    client = connect(address, timeout)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        return _login_refused(address, exc)
    except redis.RedisError as exc:
        if isinstance(cause := exc.__context__, ssl.SSLCertVerificationError):
            return (f"the bus's certificate at {address.url} did not verify ({cause.verify_message}): "
                    "give --bus-ca FILE with the CA that signed it")
        return f"cannot reach the bus at {address.url}: {exc}"
    finally:
        client.close()
    return None


def _login_refused(address: BusAddress, exc: Exception) -> str:
    """The one line for a bus that wants a password it did not get: the variable to set,
    never its value (redis-py's own words hold none either)."""
    user = os.environ.get(USER_ENV)
    if not os.environ.get(PASSWORD_ENV):
        return f"the bus at {address.url} asks for a password: set {PASSWORD_ENV}" + \
            ("" if user else f" (and {USER_ENV} for an ACL user)")
    who = f"user {user!r}" if user else "its default user"
    return f"the bus at {address.url} refused {PASSWORD_ENV} for {who} ({exc})"
