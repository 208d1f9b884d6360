"""The page in a real browser (headless Chromium): people chatting, as they would."""

from __future__ import annotations

import pytest
from browser import ChatPage, browser  # noqa: F401  (browser is a fixture)
from chatclient import PASSWORD
from test_web_port import web_port


@pytest.fixture
def page_url(start_chat):
    server, port = start_chat("--web-port", "0", "--rate-limit", "0")
    return server, port, f"http://127.0.0.1:{web_port(server)}/"


def test_two_browsers_chat_in_general(browser, page_url):  # noqa: F811
    _, _, url = page_url
    ann = ChatPage(browser(), url).open().register("ann", PASSWORD)
    bob = ChatPage(browser(), url).open().register("bob", PASSWORD)
    ann.say("hello bob")
    bob.wait_message("hello bob")
    bob.say("hi ann\nsecond line")
    ann.wait_message("hi ann\nsecond line")
    own = ann.find_all("#messages li.own")
    assert [item.text.endswith("hello bob") for item in own] == [True]
