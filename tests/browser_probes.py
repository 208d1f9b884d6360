"""`ProbedPage`: the chat page as `ChatPage` drives it, plus what the contract tests read
beneath what a user sees: the message list in one go, the browser's console, a WebSocket
opened from the page's origin, an exact desktop or phone viewport, sideways overflow.

A subclass in its own module keeps ChatPage (tests/browser.py) the page object a user's
story reads, and under the 250 lines a class may have.
"""

from __future__ import annotations

from browser import ChatPage


class ProbedPage(ChatPage):
    """A ChatPage that can also look under the page's surface."""

    def shown_messages(self) -> list[tuple[int, str]]:
        """(seq, text as shown) of every message line, top to bottom, read in one go (the page
        may redraw the list at any moment, so no element is held between two calls)."""
        return [(int(seq), text) for seq, text in self.driver.execute_script(
            'return [...document.querySelectorAll("#messages li[data-seq]")]'
            '.map((item) => [item.dataset.seq, item.innerText]);')]

    def wait_in_sidebar(self, name: str) -> None:
        """Wait until the sidebar lists `name` (a room joined, or joined for us by an invite)."""
        self.wait(lambda _: name in self.find("#sidebar").text.split(), f"{name} in the sidebar")

    def wait_unread(self, name: str, count: int) -> None:
        """Wait until the sidebar shows `count` unread for `name` (0: no badge)."""
        self.wait(lambda _: self.unread(name) == count, f"{count} unread on {name}")

    def socket_outcome(self, url: str, text: str | None = None) -> dict:
        """Open a WebSocket to `url` from this page's origin (and send `text` once open); the
        first of its `open` (without text) or `close` events, as {"opened": bool, "code": int}."""
        return self.driver.execute_async_script(
            """
            const [url, text, done] = arguments;
            let opened = false;
            const ws = new WebSocket(url);
            ws.addEventListener("open", () => {
              opened = true;
              if (text === null) { done({opened, code: 0}); ws.close(); } else ws.send(text);
            });
            ws.addEventListener("close", (event) => done({opened, code: event.code}));
            """, url, text)

    def console(self, seen: list[str]) -> list[str]:
        """The browser's console so far, appended to `seen` (reading the log empties it)."""
        seen.extend(entry["message"] for entry in self.driver.get_log("browser"))
        return seen

    def horizontal_overflow(self) -> int:
        """How many pixels the page, or a part of it that scrolls (the message list), is wider
        than its box: 0 when nothing scrolls sideways."""
        return self.driver.execute_script("""
            const scrolling = [...document.querySelectorAll("body *")].filter(
              (element) => ["auto", "scroll"].includes(getComputedStyle(element).overflowX));
            const boxes = [document.documentElement, ...scrolling];
            return Math.max(0, ...boxes.map((box) => box.scrollWidth - box.clientWidth));""")

