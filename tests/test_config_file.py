"""`--config FILE` (CLI.md, version 2): option values from TOML, the command line winning,
and every problem with the file a usage error that names the key and the file."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import click
import pytest
from chatclient import connect
from procs import Netlab, wait_file_contains

from netlab.cli import chat_serve, echo_serve
from netlab.config_file import option_keys

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "netlab.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_values_apply_paths_a_flag_and_limits(tmp_path):
    data, log = tmp_path / "from-file", tmp_path / "logs" / "chat.log"
    config = write_config(tmp_path, f'data-dir = "{data}"\nlog-file = "{log}"\nno-repl = true\n'
                                    "max-clients = 1\nrate-limit = 0\n")
    server = Netlab("chat", "serve", "--config", str(config), "--port", "0")
    try:
        port = server.listening_port()
        wait_file_contains(log, "listening on")
        assert (data / "chat.lock").exists()
        with connect(port), connect(port, welcome=False) as extra:
            extra.expect_fatal("server_full")
        server.signal()
        assert server.wait() == 0
    finally:
        server.kill()


def test_the_command_line_wins_over_the_file(tmp_path):
    config = write_config(tmp_path, f'data-dir = "{tmp_path / "from-file"}"\nmax-clients = 1\n'
                                    "port = 1\n")
    cli_data = tmp_path / "from-cli"
    server = Netlab("chat", "serve", "--config", str(config), "--port", "0", "--max-clients", "2",
                    "--data-dir", str(cli_data), "--no-repl")
    try:
        port = server.listening_port()
        assert port != 1
        with connect(port), connect(port) as second:  # a second one fits: max-clients is 2
            second.send("ping")
            second.expect("pong")
        assert (cli_data / "chat.lock").exists()
        assert not (tmp_path / "from-file").exists()
    finally:
        server.kill()


# (file text, what the error line must say besides the file's name)
BAD_FILES = {
    "unknown key": ("max-client = 5\n", "unknown key 'max-client'"),
    "out of range": ("max-clients = 0\n", "'max-clients'"),
    "wrong type": ('max-clients = "500"\n', "'max-clients'"),
    "flag not a boolean": ('no-repl = "yes"\n', "'no-repl'"),
    "fractional count": ("max-clients = 1.5\n", "'max-clients'"),
    "bad array item": ('web-origin = ["https://ok.example", "nowhere"]\n', "'web-origin'"),
    "not an array": ('web-origin = "https://ok.example"\n', "'web-origin'"),
    "bad TOML": ("max-clients = \n", "not valid TOML"),
    "config in config": ('config = "other.toml"\n', "unknown key 'config'"),
}


@pytest.mark.parametrize("kind", ["chat", "echo"])
@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_a_usage_error_naming_key_and_file(tmp_path, kind, case):
    text, said = BAD_FILES[case]
    if kind == "echo" and "web-origin" in text:
        said = "unknown key 'web-origin'"  # the echo server has no web port
    config = write_config(tmp_path, text)
    assert_usage_error(tmp_path, kind, ["--config", str(config)], [said, str(config)])


@pytest.mark.parametrize("kind", ["chat", "echo"])
def test_a_missing_file_is_a_usage_error(tmp_path, kind):
    missing = tmp_path / "nowhere.toml"
    assert_usage_error(tmp_path, kind, ["--config", str(missing)], ["'--config'", str(missing)])


def assert_usage_error(tmp_path: Path, kind: str, args: list[str], said: list[str]) -> None:
    """Exit 2 with click's usage error: one `Error:` line saying all of `said`, no traceback,
    and no data directory made."""
    data = tmp_path / "data"
    server = Netlab(kind, "serve", *args, "--port", "0", "--data-dir", str(data), "--no-repl")
    try:
        assert server.wait() == 2
        lines = server.err.wait_closed()
    finally:
        server.kill()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, lines
    assert all(part in errors[0] for part in said), errors[0]
    assert "Traceback" not in "\n".join(lines)
    assert not data.exists()


def test_the_keys_are_each_servers_own_long_option_names():
    chat, echo = option_keys(chat_serve), option_keys(echo_serve)
    assert {"host", "port", "data-dir", "no-repl", "log-file", "web-origin", "max-clients-per-ip",
            "history-size"} <= set(chat)
    assert {"host", "no-repl", "max-clients", "max-clients-per-ip"} <= set(echo)
    assert not {"web-origin", "history-size"} & set(echo)
    assert not {"config", "help", "h"} & (set(chat) | set(echo))


def readme_example() -> str:
    """The README's example config file: the indented block after its `chat.toml` line."""
    text = README.read_text(encoding="utf-8")
    start = text.index("/etc/netlab/chat.toml:\n\n") + len("/etc/netlab/chat.toml:\n\n")
    return textwrap.dedent(re.match(r"((?: {4}.*)?\n)+", text[start:]).group(0))


def test_the_readme_example_names_every_option_with_its_default():
    example = readme_example()
    given = tomllib.loads(example)
    commented = tomllib.loads("\n".join(re.findall(r"^# ?([a-z-]+ = .*)$", example, re.MULTILINE)))
    keys = option_keys(chat_serve)
    assert set(given) | set(commented) == set(keys), "README's example and chat serve's options differ"
    assert not set(given) & set(commented)
    ctx = click.Context(chat_serve)
    defaults = chat_serve.make_context("serve", []).params
    for key, value in given.items():
        option = keys[key]
        assert option.type_cast_value(ctx, value) == defaults[option.name], key
    for key in commented:  # commented out: no default a TOML value could spell
        assert defaults[keys[key].name] is None, key


def test_the_readme_example_is_accepted_by_chat_serve(tmp_path):
    config = write_config(tmp_path, readme_example())
    # In tmp_path, where the example's relative data-dir goes; this checkout's netlab all the same.
    server = Netlab("chat", "serve", "--config", str(config), "--port", "0", cwd=tmp_path,
                    env={"PYTHONPATH": str(ROOT)})
    try:
        server.listening_port()
        assert (tmp_path / "data" / "chat.lock").exists()  # the example's data-dir, in the cwd
    finally:
        server.kill()
