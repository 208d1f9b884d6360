"""How the chat client's session logs in (sans-IO): which request, which protocol
version, the waits between tries when the server throttles, and the password in use
(a /passwd changes it for every login after its `ok`)."""

from __future__ import annotations

from netlab.client.effects import Credentials, Effect, Send, Show, Timer

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0


class Authenticator:
    """The session's logins; `delay` is also the next reconnect's backoff."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.offers_v2 = False  # the current connection's welcome lists version 2
        self.throttled = False  # a login was turned away with rate_limited; cleared by `ok`
        self.delay = BACKOFF_FIRST  # reset by each login
        self.new_password: str | None = None  # asked for by /passwd, in use from its `ok`

    def welcomed(self, welcome: dict) -> None:
        versions = welcome.get("versions")
        self.offers_v2 = isinstance(versions, list) and 2 in versions

    def request(self, registered: bool) -> Send:
        """The `register` (the first time, if asked) or `login`, asking for version 2 when
        the server speaks it (a version 1 server has no `versions`, and gets no `protocol`)."""
        creds = self.credentials
        op = "register" if creds.register and not registered else "login"
        version = {"protocol": 2} if self.offers_v2 else {}
        return Send({"type": op, "username": creds.username, "password": creds.password, **version})

    def succeeded(self) -> None:
        self.delay = BACKOFF_FIRST
        self.throttled = False

    def backoff(self) -> float:
        """The wait before the next try, which doubles up to BACKOFF_MAX."""
        wait = self.delay
        self.delay = min(BACKOFF_MAX, self.delay * 2)
        return wait

    def later(self, frame: dict, now: float, connection: int) -> list[Effect]:
        """The login itself was turned away: failed logins for this name or address
        (for up to a minute), or a server busy hashing. Try again later and later,
        with the server's reason, rather than twice a second for that minute."""
        wait = self.backoff()
        self.throttled = True
        return [Show("error", f"error: the server refused the login for now ({frame.get('message')}); "
                     f"trying again in {wait:.1f} s", frame),
                Timer(now + wait, ("login", connection))]

    def password_changed(self) -> None:
        self.credentials.password = self.new_password or self.credentials.password
