"""What an idle WebSocket session holds in the server beyond a TCP one (issue 16: at most 8 KiB
a session in all, with 5,000 of them): its `WebConnection` and `MessageReader`, measured with
tracemalloc over many connections after a handshake and a login, as `bench idle --transport ws`
measures the whole process's RSS (docs/performance.md). Sans-IO: no sockets."""

from __future__ import annotations

import gc
import tracemalloc

from test_web_codecs import HANDSHAKE, SITE, masked
from websockets.frames import Opcode

from netlab.wire import encode_payload
from netlab.wire.web import WebConnection

LOGIN = masked(Opcode.TEXT, encode_payload({"type": "login", "username": "ada", "password": "pw" * 6,
                                            "protocol": 2}))
#: Measured 1.85 KiB (the websockets Protocol, its parser's generators, the last frame it
#: parsed), some room left for another release of websockets; 2.5 KiB while the reader kept
#: a deque, whose empty block is 0.7 KiB by itself.
BOUND = 2200


def idle_session() -> WebConnection:
    """A web connection upgraded, its login read and its answers taken: an idle session's."""
    web = WebConnection(SITE, 65536)
    web.feed(HANDSHAKE)
    web.take_http()
    web.take_upgrade()
    web.feed(LOGIN)
    assert [frame["type"] for frame in web] == ["login"]
    web.ws.outgoing()
    return web


def test_an_idle_websocket_session_holds_no_empty_deque_or_other_slack():
    count = 500
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        sessions = [idle_session() for _ in range(count)]
        gc.collect()
        held = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    del sessions  # held until measured
    assert held < BOUND, f"{held:.0f} bytes a session"
