"""A server restart while messages are sent, as the page in a real browser lives through it:
the page reconnects by itself (no reload), fills the gap by seq, and shows every acknowledged
message exactly once, in seq order (issue 16, "reconnect with backoff ... nothing missing,
nothing twice")."""

from __future__ import annotations

import itertools
import re
import signal
from collections.abc import Iterator

from browser import browser  # noqa: F401  (browser is a fixture)
from browser_probes import ProbedPage
from chatclient import PASSWORD, Closed
from procs import WAIT
from test_web_port import web_port
from v2client import V2Client, logged_in2, registered2

BURST = 4  # messages said at each step: enough to leave a gap, few enough to stay quick
COUNTED = re.compile(r"count (\d+)")
# Not general: the page gets general's newest page unasked at every login, a room's gap it must
# fill itself.
ROOM = "lab"


def said_and_acknowledged(bob: V2Client, numbers: Iterator[int]) -> list[int]:
    """Say the next BURST numbers in the room, each awaited: all acknowledged."""
    said = list(itertools.islice(numbers, BURST))
    for n in said:
        bob.say_in(ROOM, f"count {n:03}", id=f"n{n}")
    return said


def said_while_stopping(server, stop: signal.Signals, bob: V2Client, numbers: Iterator[int]) -> list[int]:
    """Send the next BURST numbers without waiting, stop the server with `stop` at once, and
    return those whose message came back before the connection ended: the acknowledged ones."""
    for n in itertools.islice(numbers, BURST):
        bob.send("say", room=ROOM, text=f"count {n:03}", id=f"n{n}")
    server.signal(stop)
    acknowledged = []
    try:
        while True:
            frame = bob.recv()
            if frame["type"] == "message" and frame.get("from") == "bob" and "id" in frame:
                acknowledged.append(int(frame["id"][1:]))
    except (Closed, OSError):  # the end, or a reset when kill -9 left our bytes unread
        pass
    bob.close()
    server.wait()
    return acknowledged


def counts_shown(page: ProbedPage) -> list[tuple[int, int]]:
    """(seq, number) of every counted message the page shows, top to bottom."""
    return [(seq, int(match.group(1))) for seq, text in page.shown_messages()
            if (match := COUNTED.search(text))]


def test_the_page_loses_and_doubles_nothing_when_the_server_restarts_mid_conversation(
        browser, start_chat):  # noqa: F811
    server, port = start_chat("--web-port", "0", "--rate-limit", "0")
    web = web_port(server)
    ann = ProbedPage(browser(), f"http://127.0.0.1:{web}/").open().register("ann", PASSWORD)
    ann.driver.execute_script("window.sameDocument = true;")  # gone if the page were reloaded
    bob = registered2(port, "bob")
    bob.create(ROOM)
    bob.send("invite", room=ROOM, username="ann")
    bob.wait_for("ok", op="invite")
    ann.wait_in_sidebar(f"#{ROOM}")
    ann.show(f"#{ROOM}")
    numbers = itertools.count(1)
    acknowledged = said_and_acknowledged(bob, numbers)
    ann.wait_message(f"count {acknowledged[-1]:03}")

    for stop in (signal.SIGTERM, signal.SIGKILL):  # stopped politely, then killed outright
        acknowledged += said_while_stopping(server, stop, bob, numbers)
        # The first time the browser is offline too until bob has spoken, so the page surely
        # has a gap to fill (and comes back on the `online` event); the second time it comes
        # back by its backoff alone, most likely after bob's messages as well.
        ann.set_offline(stop == signal.SIGTERM)
        server, port = start_chat("--web-port", str(web), "--rate-limit", "0")  # same data dir
        bob = logged_in2(port, "bob")
        acknowledged += said_and_acknowledged(bob, numbers)
        ann.set_offline(False)
    bob.close()

    ann.wait(lambda _: set(acknowledged) <= {n for _, n in counts_shown(ann)},
             f"every acknowledged message ({acknowledged})", timeout=2 * WAIT)
    shown = counts_shown(ann)
    seqs, shown_numbers = [seq for seq, _ in shown], [n for _, n in shown]
    assert seqs == sorted(set(seqs)), f"a message shown twice or out of order: {shown}"
    assert len(shown_numbers) == len(set(shown_numbers)), f"a message shown twice: {shown}"
    assert ann.driver.execute_script("return window.sameDocument === true"), "the page was reloaded"
