"""Issue 16's contract in a real browser (headless Chromium), each part as a user would notice it:
a browser and a terminal sharing a room, unread counts and a read marker kept in step between
two devices of one account, and a hostile page or script finding every door shut (a foreign
origin refused, an injected inline script blocked by the CSP, a message over max_frame closed
with 1009 while the server keeps serving everyone else, `/healthz` answering).

The restart story (nothing lost or doubled in the page) is in tests/test_browser_restart.py.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import threading

from browser import browser  # noqa: F401  (browser is a fixture)
from browser_probes import ProbedPage
from chatclient import PASSWORD
from procs import assert_exits_zero
from test_client import terminal_client
from test_web_port import web_port
from v2client import registered2

MAX_FRAME = 16384  # the smallest --max-frame CLI.md allows: the 1009 test's text stays small


def chat_page(start_chat, *extra: str) -> tuple[int, str]:
    """A chat server with its web port: (its TCP port, the page's address)."""
    server, port = start_chat("--web-port", "0", "--rate-limit", "0", *extra)
    return port, f"http://127.0.0.1:{web_port(server)}/"


def test_a_browser_and_a_terminal_talk_in_a_room_of_their_own(browser, start_chat):  # noqa: F811
    port, url = chat_page(start_chat)
    ann = ProbedPage(browser(), url).open().register("ann", PASSWORD)
    tom = terminal_client(port, "--user", "tom", "--password-env", "PW", "--register")
    tom.logfile_read = seen = io.StringIO()
    try:
        tom.expect("tom #general>")
        tom.sendline("/create lab the lab's own room")
        tom.expect("tom #lab>")
        tom.sendline("/invite ann")
        tom.expect("invited")
        ann.wait_in_sidebar("#lab")
        ann.show("#lab")
        ann.wait_text("#place-topic", "the lab's own room")
        tom.sendline("hello from the terminal")
        ann.wait_message("hello from the terminal")
        ann.say("hello from the browser")
        tom.expect(r"\] ann: hello from the browser")
        ann.show("#general")
        assert not any("terminal" in text for _, text in ann.shown_messages())  # said in #lab only
        assert seen.getvalue().count("ann: hello from the browser") == 1
        tom.sendline("/quit")
        assert_exits_zero(tom)
    finally:
        tom.close(force=True)


def test_unread_counts_follow_the_account_from_one_browser_to_the_other(browser, start_chat):  # noqa: F811
    port, url = chat_page(start_chat)
    laptop = ProbedPage(browser(), url).open().register("ann", PASSWORD)
    phone = ProbedPage(browser(), url).open().login("ann", PASSWORD)
    bob = registered2(port, "bob")
    try:
        bob.create("lab")
        bob.send("invite", room="lab", username="ann")
        bob.wait_for("ok", op="invite")
        for device in (laptop, phone):
            device.wait_in_sidebar("#lab")
        for n in range(1, 4):
            bob.say_in("lab", f"news {n}")
        laptop.wait_unread("#lab", 3)
        phone.wait_unread("#lab", 3)

        laptop.show("#lab")  # read there: the marker moves, on the phone too
        laptop.wait_message("news 3")
        phone.wait_unread("#lab", 0)

        laptop.show("#general")
        bob.say_in("lab", "news 4")
        laptop.wait_unread("#lab", 1)
        phone.wait_unread("#lab", 1)
    finally:
        bob.close()


def in_console(page: ProbedPage, *words: str) -> None:
    """Wait until one line of the browser's console holds all of `words`."""
    console: list[str] = []
    page.wait(lambda _: any(all(word in line for word in words) for line in page.console(console)),
              f"{words} in the console")


@contextlib.contextmanager
def foreign_site():
    """Another origin on this machine: a tiny web server on another port, its page empty."""

    class Empty(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>elsewhere</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # the test's output is not the place for its requests

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Empty)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_hostile_page_or_script_finds_every_door_shut(browser, start_chat):  # noqa: F811
    _, url = chat_page(start_chat, "--max-frame", str(MAX_FRAME))
    socket_url = url.replace("http://", "ws://") + "ws"
    ann = ProbedPage(browser(), url).open().register("ann", PASSWORD)
    bob = ProbedPage(browser(), url).open().register("bob", PASSWORD)

    # A page from another origin may not talk to the chat: the handshake is refused (403).
    with foreign_site() as elsewhere:
        bob.driver.get(elsewhere)
        assert bob.socket_outcome(socket_url) == {"opened": False, "code": 1006}
        in_console(bob, socket_url, "Unexpected response code: 403")  # refused, not unreachable
    bob.open()
    assert bob.socket_outcome(socket_url)["opened"]  # the page's own origin is let in
    bob.login("bob", PASSWORD)

    # A script injected into the live page does not run, and the console says why.
    injected = bob.driver.execute_script("""
        const script = document.createElement("script");
        script.textContent = "window.injectedRan = true;";
        document.head.append(script);
        return window.injectedRan === undefined;""")
    assert injected, "an inline script ran despite the CSP"
    in_console(bob, "Executing inline script violates", "Content Security Policy")
    handler_blocked = bob.driver.execute_async_script("""
        const done = arguments[0];
        const image = document.createElement("img");
        image.setAttribute("onerror", "window.handlerRan = true;");  // runs first, if at all
        image.addEventListener("error", () => done(window.handlerRan === undefined));
        image.src = "/no-such-image.png";
        document.body.append(image);""")
    assert handler_blocked, "an inline onerror handler ran despite the CSP"
    in_console(bob, "Executing inline event handler violates", "Content Security Policy")

    # A message over --max-frame from the page's origin: closed with 1009 ...
    assert bob.socket_outcome(socket_url, "x" * (MAX_FRAME + 1)) == {"opened": True, "code": 1009}
    # ... while the server keeps serving everyone else.
    ann.say("still here?")
    bob.wait_message("still here?")
    bob.say("yes, still here")
    ann.wait_message("yes, still here")

    bob.driver.get(url + "healthz")
    assert bob.find("body").text == "ok"
    status = bob.driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].responseStatus")
    assert status == 200
