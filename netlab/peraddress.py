"""Connections open per client address (--max-clients-per-ip): one host cannot take every place.

Both servers keep the rule here. A connection counts from its accept (a TLS handshake and
an unauthenticated session included) until the server has let it go; the chat lets go
when it tells the connection to close, as `--max-clients` counts, not when the last
byte of that goodbye has drained (at most the 2 s close grace later).

Refusals are logged once per burst, not once per socket: a host that opens thousands of
sockets at once would otherwise write thousands of lines. A burst is logged when its
address first goes over the limit, and again, with how many were refused, when one of
that address's connections closes (and it is under the limit again) or the server stops.
A burst only ends with an accepted connection, which writes lines of its own anyway, so
no pattern of refusals costs more log lines than the connections let in did. The lines
name an address by its keyed tag (crypto.address_tag), given with it, never in clear.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

#: A class or an office behind one NAT: some 30 to 40 people, each with a terminal, a
#: phone or a bot, fit under it with room to spare; one host alone now needs a hundred
#: addresses to fill the chat's 10,000 places. ngircd's MaxConnectionsIP is the precedent
#: (there 5, for IRC users with one client each).
DEFAULT_MAX_CLIENTS_PER_IP = 100


class AddressLimit:
    """Open connections per address and the refusals past `limit`. Not thread-safe: the
    chat calls it from its loop, the echo server under its lock."""

    def __init__(self, limit: int, log: logging.Logger, tag: Callable[[str], str]) -> None:
        """`tag`: how the log names an address (crypto.address_tag under the server's key)."""
        self.limit = limit
        self._log = log
        self._tag = tag
        self._open: Counter[str] = Counter()  # addresses with a connection open, and how many
        self._refused: dict[str, int] = {}  # addresses in a burst: refused in it so far

    def admit(self, ip: str) -> bool:
        """Count one more connection from `ip`, or refuse it (False) at the limit."""
        if self._open[ip] < self.limit:
            self._open[ip] += 1
            return True
        if ip not in self._refused:
            self._log.info("refusing connections from %s: %d open (--max-clients-per-ip)",
                           self._tag(ip), self.limit)
            self._refused[ip] = 0
        self._refused[ip] += 1
        return False

    def release(self, ip: str) -> None:
        """A connection `admit` counted has gone; it ends the address's burst, if any."""
        self._open[ip] -= 1
        if not self._open[ip]:
            del self._open[ip]
        refused = self._refused.pop(ip, None)
        if refused is not None:
            self._log.info("refused %d connection(s) from %s while it had %d open (--max-clients-per-ip)",
                           refused, self._tag(ip), self.limit)
