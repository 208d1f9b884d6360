"""Programs of the operating system some tests run (logrotate, systemd-analyze).

Outside CI a machine without one skips those tests with the command that installs it; in CI
(`NETLAB_CI=1`, set by `.ci/run`, which installs them) a missing one is a failure, never a skip,
as tests/browser.py does for the browser.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_command(name: str, package: str) -> str:
    """The path of program `name`; skip (outside CI) or fail (in CI) without it."""
    path = shutil.which(name) or next((f"{folder}/{name}" for folder in ("/usr/sbin", "/sbin")
                                       if os.access(f"{folder}/{name}", os.X_OK)), None)
    if path is not None:
        return path
    message = f"{name} missing: apt-get install {package}"
    if os.environ.get("NETLAB_CI"):
        pytest.fail(message)
    pytest.skip(message)
