"""How the servers' logs name a client address: a keyed tag, never the address (README, "Logs")."""

from __future__ import annotations

import re
from pathlib import Path

from procs import wait_until

from netlab.crypto import Vault, read_key

#: A tag as a regular expression: `ip-` and ten lowercase base32 digits.
TAG = r"ip-[a-z2-7]{10}"


def tag_of(data_dir: Path, ip: str) -> str:
    """The tag a chat server on `data_dir` logs `ip` by (its netlab.key; the tests set no NETLAB_KEY)."""
    found = read_key(data_dir, {})
    assert found is not None, f"no netlab.key in {data_dir}"
    return Vault(found[0]).address_tag(ip)


def tag_in_file(path: Path, port: int) -> str:
    """The tag `path`'s lines name the connection from local `port` by, once one does: the
    echo server's key is its run's own, so a test learns its tags from its log."""
    found: list[str] = []

    def seen() -> bool:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        found[:] = re.findall(rf"({TAG}):{port}\b", text)
        return bool(found)

    wait_until(seen)
    return found[0]
