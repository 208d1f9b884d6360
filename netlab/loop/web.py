"""The web port on the chat's loop: its listener, the static files, and what a web
connection's bytes lead to (HTTP answers, the upgrade, the WebSocket close).

A web connection is a plain HTTP connection from its accept, not a chat session: a
browser opens several (preconnects, keep-alive after the page's files), and they are
no users. It still counts against --max-clients and --max-clients-per-ip (they bound
sockets), and the auth timeout still closes it, as it bounds an HTTP request that
never ends (a slowloris) and a login. It becomes a session when its WebSocket upgrade
succeeds: the chat's `welcome` is the first frame after the 101 (a plain HTTP client
never sees a chat frame). Its codec is the WebSocket one from the start. The HTTP and
WebSocket rules themselves are sans-IO: `wire/web.py`, `wire/websocket.py`.
"""

from __future__ import annotations

import ipaddress
import mimetypes
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from netlab.loop.outbox import Outbox
from netlab.loop.output import Unframed
from netlab.netutil import format_address
from netlab.wire.web import Site, StaticFile, WebConnection
from netlab.wire.websocket import close_code, close_frame, last_frame_payload

if TYPE_CHECKING:
    from netlab.chat_core import Chat
    from netlab.loop.transport import Connection

#: The browser client's files, shipped in the package (no build step, no CDN).
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
#: A static file larger than this is not served (the page's files are a few dozen KiB).
MAX_STATIC_FILE = 4 * 1024 * 1024


def read_site(scheme: str, origins: tuple[str, ...], max_header_bytes: int,
              directory: Path = STATIC_DIR) -> Site:
    """The static files, read once at start-up: the loop never reads a file."""
    files = {}
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.stat().st_size <= MAX_STATIC_FILE:
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if kind.startswith("text/") or kind == "application/javascript":
                    kind += "; charset=utf-8"
                files["/" + path.name] = StaticFile(path.read_bytes(), kind)
    return Site(files, scheme, frozenset(o.lower().rstrip("/") for o in origins), max_header_bytes)


class WebPort:
    """The web port's listener and site; what the loop does with a web connection's bytes."""

    def __init__(self, listener: socket.socket, site: Site) -> None:
        self.listener = listener
        self.site = site
        host, port = listener.getsockname()[:2]
        if ipaddress.ip_address(host).is_unspecified:  # every interface: 0.0.0.0 opens nothing
            host = socket.gethostname()  # elsewhere, and a certificate names the machine
        self.url = f"{site.scheme}://{format_address((host, port))}/"

    def connect(self, conn: Connection, chat: Chat, max_frame: int) -> None:
        """A web connection just accepted: an HTTP one, a session only once it upgrades."""
        conn.decoder = WebConnection(self.site, max_frame, conn.ip)
        chat.connect(conn.sid, conn.peer, conn.ip, chat.now, session=False)


def after_feed(conn: Connection, outbox: Outbox, chat: Chat) -> str | None:
    """Send what the bytes just fed called for; why the connection ends, if it does."""
    web: WebConnection = conn.decoder
    if http := web.take_http():
        outbox.send_raw(conn.out, Unframed(http))
    if web.take_upgrade():
        chat.upgraded(conn.sid)  # a session now: its welcome is the first frame after the 101
    if web.ws is not None and (control := web.ws.outgoing()):
        outbox.send_raw(conn.out, control)
    if web.peer_closed:
        web.ending = True
        return "closed by peer"
    if web.done:
        web.ending = True
        return "web request answered"
    return None


def goodbye(conn: Connection, outbox: Outbox) -> None:
    """The chat closes a web session: a WebSocket one gets a close frame with PROTOCOL.md's
    code after its last frame; an HTTP one never gets the chat's frames."""
    web = conn.decoder
    if not isinstance(web, WebConnection) or web.ending:
        return
    web.ending = True
    if web.ws is None:  # server_full, auth_timeout, shutdown: said in HTTP, if it still can be
        last = conn.out.drop_frames()
        if answer := web.farewell(last_frame_payload(last) if last else None):
            outbox.send_raw(conn.out, Unframed(answer))
        return
    private = conn.out.private
    last = last_frame_payload(private[-1][1]) if private else None
    outbox.send_raw(conn.out, close_frame(close_code(last)))
