"""The page in a real browser (headless Chromium): people chatting, as they would, one of them
on a phone. The run leaves screenshots of both widths in test-screenshots/ for a person to look at."""

from __future__ import annotations

import pytest
from browser import DESKTOP, PHONE, browser  # noqa: F401  (browser is a fixture)
from browser_probes import ProbedPage
from chatclient import PASSWORD
from test_web_port import web_port

# A link or a word longer than a phone is wide: it must wrap, never widen the page.
LONG_WORD = "https://example.org/" + "a-very-long-path" * 8


# Where a message's line that starts with `arguments[0]` begins, and where its time begins (px).
SECOND_LINE_AND_TIME = """
const item = [...document.querySelectorAll("#messages li[data-seq]")]
  .find((li) => li.textContent.includes(arguments[0]));
const text = item.lastChild, at = text.data.indexOf(arguments[0]), range = document.createRange();
range.setStart(text, at);
range.setEnd(text, at + 1);
return [range.getBoundingClientRect().left, item.querySelector("time").getBoundingClientRect().left];
"""


@pytest.fixture
def page_url(start_chat):
    server, port = start_chat("--web-port", "0", "--rate-limit", "0")
    return server, port, f"http://127.0.0.1:{web_port(server)}/"


def opened_at(driver, url: str, size: tuple[int, int], phone: bool = False) -> ProbedPage:
    page = ProbedPage(driver, url).open()
    page.emulate(size, phone)
    return page


def assert_fits_a_phone(page: ProbedPage, view: str) -> None:
    """Nothing to scroll sideways at phone width (a phone user would have to, to read)."""
    assert page.horizontal_overflow() == 0, f"the {view} is wider than a phone"


def test_two_browsers_chat_in_general_one_of_them_on_a_phone(browser, page_url):  # noqa: F811
    _, _, url = page_url
    ann = opened_at(browser(), url, DESKTOP)
    bob = opened_at(browser(size=PHONE), url, PHONE, phone=True)
    ann.screenshot("login-desktop")
    bob.screenshot("login-phone")
    assert_fits_a_phone(bob, "login view")

    ann.register("ann", PASSWORD)
    bob.register("bob", PASSWORD)
    ann.say("hello bob")
    bob.wait_message("hello bob")
    bob.say("hi ann\nsecond line")
    ann.wait_message("hi ann\nsecond line")
    # A message's second line is indented under its first, not under the time column.
    second, time = ann.driver.execute_script(SECOND_LINE_AND_TIME, "second line")
    assert second > time, f"the second line starts at {second} px, the time at {time} px"
    ann.say(f"the notes are at {LONG_WORD}")
    bob.wait_message(LONG_WORD)
    own = [item.text for item in ann.find_all("#messages li.own")]  # ann's own, marked: not bob's
    assert len(own) == 2 and "hello bob" in own[0] and "the notes" in own[1], own

    ann.screenshot("chat-desktop")
    bob.screenshot("chat-phone")
    assert_fits_a_phone(bob, "chat view")
