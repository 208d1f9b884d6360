"""`--bus URL`: where the bus is (CLI.md: `redis://HOST:PORT/DB`), and whether it answers.

Checked at start-up, before the server listens or touches its data directory: a bus that
cannot be reached is one clear line and exit status 2 (CLI.md), not a node that starts and
then refuses every message.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class BusAddress:
    host: str
    port: int
    db: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def parse_bus_url(text: str) -> BusAddress:
    """`redis://HOST[:PORT][/DB]`; ValueError with a sentence saying what is wrong.

    No user or password in the URL: a command line shows in `ps` to every local user, and a
    config file's value would end up in logs that echo the URL."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:  # a port that is not a number or out of range
        raise ValueError(f"{text!r} is not a bus URL: {exc}") from None
    if parts.scheme != "redis":
        raise ValueError(f"{text!r} is not a bus URL: it must start with redis://")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a bus URL holds no user or password (they would show in ps and in logs)")
    if not parts.hostname:
        raise ValueError(f"{text!r} names no host: redis://HOST:PORT/DB")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r}: a bus URL has no query or fragment")
    path = parts.path.lstrip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise ValueError(f"{text!r}: the database must be a number (redis://HOST:PORT/DB)")
    if port == 0:
        raise ValueError(f"{text!r}: port 0 is no bus's port")
    return BusAddress(parts.hostname, port or DEFAULT_PORT, int(path) if path else DEFAULT_DB)


def connect(address: BusAddress, timeout: float) -> redis.Redis:
    """A client of the bus, with redis-py's own retries off: a command whose answer was lost
    may have been carried out, so resending it is the caller's decision (a publish is resent
    only with its idempotency key; else the answer is `unavailable`). `timeout` bounds a
    connect and a reply (it must exceed the reader's XREAD BLOCK)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(host=address.host, port=address.port, db=address.db, retry=Retry(NoBackoff(), 0),
                       socket_connect_timeout=timeout, socket_timeout=timeout)


def unreachable(address: BusAddress, timeout: float = CHECK_TIMEOUT) -> str | None:
    """Why the bus does not answer (connect, select its database, PING), or None if it does."""
    import redis

    client = connect(address, timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"cannot reach the bus at {address.url}: {exc}"
    finally:
        client.close()
    return None
