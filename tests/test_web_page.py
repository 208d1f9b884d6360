"""The browser client's files as the web port serves them: at `/`, with their content
types and the security headers, and a page whose scripts and styles all come from files
(the CSP forbids inline ones, so an inline one would silently not run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_web_port import http, status, web  # noqa: F401  (web is a fixture)

import netlab
from netlab.client.words import ERROR_SENTENCES

STATIC = Path(netlab.__file__).parent / "static"
# Every module the page imports, with a JavaScript type: under nosniff a module served as
# anything else is not run.
PAGES = {
    b"/": b"text/html; charset=utf-8",
    b"/app.css": b"text/css; charset=utf-8",
    b"/icon.svg": b"image/svg+xml",
} | {f"/{module.name}".encode(): b"javascript; charset=utf-8" for module in sorted(STATIC.glob("*.js"))}


@pytest.mark.parametrize("path", PAGES)
def test_the_page_files_are_served_with_their_type_and_the_csp(web, path):  # noqa: F811
    _, _, port = web
    answer = http(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status(answer) == 200 and body
    content_type = re.search(rb"Content-Type: ([^\r]+)", head).group(1)
    assert content_type.endswith(PAGES[path])
    for header in (b"Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'",
                   b"X-Content-Type-Options: nosniff", b"Cache-Control: no-cache"):
        assert header in head


def test_the_page_has_no_inline_script_or_style(web):  # noqa: F811
    _, _, port = web
    page = http(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").partition(b"\r\n\r\n")[2].decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S | re.I)
    assert scripts and all('src="/app.js"' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", page, re.I)
    assert '<link rel="stylesheet" href="/app.css">' in page


def test_the_page_says_errors_in_the_terminal_clients_sentences():
    """words.js holds a copy of words.py's sentences (a page cannot import Python): kept equal here."""
    script = (STATIC / "words.js").read_text()
    block = script.split("export const ERROR_SENTENCES = {", 1)[1].split("\n};", 1)[0]
    entries = re.findall(r'(\w+): ((?:"[^"]*"\s*\+?\s*)+),', block)
    in_page = {code: "".join(re.findall(r'"([^"]*)"', strings)) for code, strings in entries}
    # The one the page words its own way: a page has no /join command to name.
    assert in_page == ERROR_SENTENCES | {"not_member": "you are not in that room: join it first"}


def test_each_module_of_the_page_stays_small():
    """One job a module (as tests/test_module_sizes.py asks of the Python): none over 400 lines."""
    sizes = {module.name: len(module.read_text().splitlines()) for module in STATIC.glob("*.js")}
    assert sizes and max(sizes.values()) <= 400, sizes
