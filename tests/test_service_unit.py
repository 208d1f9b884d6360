"""contrib/netlab-chat.service: `systemd-analyze verify` finds nothing wrong with it, it has
the hardening README promises, and its command line starts the chat as it would under systemd
(the specifiers and the config file put in a temporary directory)."""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from procs import WAIT, Netlab, wait_file_contains
from system_tools import require_command
from test_config_file import readme_example

UNIT = Path(__file__).parent.parent / "contrib" / "netlab-chat.service"
INSTALLED_AT = "/usr/local/bin/netlab"
CONFIG_AT = "/etc/netlab/chat.toml"


def settings() -> dict[str, list[str]]:
    """Each key of the unit with its values in order (continued lines joined)."""
    found: dict[str, list[str]] = {}
    text = UNIT.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value.strip())
    return found


def test_systemd_analyze_verify_finds_nothing_wrong(tmp_path):
    analyze = require_command("systemd-analyze", "systemd")
    # verify wants ExecStart's program to exist: this checkout's, in a copy of the unit.
    netlab = Path(sys.executable).with_name("netlab")
    assert netlab.exists()
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED_AT, str(netlab)), encoding="utf-8")
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert UNIT.name not in done.stdout + done.stderr, done.stderr


def test_the_unit_has_the_promised_hardening():
    unit = settings()
    wanted = {
        "DynamicUser": "yes", "StateDirectory": "netlab", "LogsDirectory": "netlab",
        "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "Restart": "on-failure",
        "EnvironmentFile": "/etc/netlab/chat.env",
    }
    assert {key: unit.get(key, [None])[0] for key in wanted} == wanted
    assert "@system-service" in unit["SystemCallFilter"]
    command = shlex.split(unit["ExecStart"][0])
    assert command[:3] == [INSTALLED_AT, "chat", "serve"]
    assert {"--no-repl", "--config"} <= set(command)


def test_the_units_command_line_starts_the_chat(tmp_path):
    """ExecStart as systemd would run it: %S and %L under tmp_path, README's example file as
    /etc/netlab/chat.toml, the key in the environment as EnvironmentFile puts it."""
    config = tmp_path / "chat.toml"
    config.write_text(readme_example(), encoding="utf-8")
    specifiers = {"%S": str(tmp_path / "state"), "%L": str(tmp_path / "log")}
    args = [re.sub("%[SL]", lambda m: specifiers[m.group(0)], arg).replace(CONFIG_AT, str(config))
            for arg in shlex.split(settings()["ExecStart"][0])[1:]]
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    server = Netlab(*args, "--port", "0", env={"NETLAB_KEY": key})
    try:
        server.listening_port()
        wait_file_contains(tmp_path / "log" / "netlab" / "chat.log", "listening on", WAIT)
        assert (tmp_path / "state" / "netlab" / "chat.lock").exists()
        assert not (tmp_path / "state" / "netlab" / "netlab.key").exists()  # the environment's
    finally:
        server.kill()
