import resource
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Tests hold a thousand and more sockets at once: lift the soft limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))

# A suite started in the background of a non-interactive shell (`make test &`) inherits
# SIGINT ignored, and so would every client it starts, which then cannot be stopped with
# Ctrl-C as a user's can: the Ctrl-C tests would fail for the way the suite was started.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def start_chat(tmp_path: Path):
    """Start chat servers (`--port 0`, `--no-repl` unless repl=True); all are killed at teardown."""
    from procs import serve

    started = []

    def start(*extra: str, data: Path | None = None, repl: bool = False,
              env: dict[str, str] | None = None):
        args = extra if repl else ("--no-repl", *extra)
        server, port = serve("chat", data or tmp_path / "data", *args, env=env)
        started.append(server)
        return server, port

    yield start
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def module_chat(tmp_path_factory):
    """One chat server for a whole module, flood control off."""
    from procs import serve

    server, port = serve("chat", tmp_path_factory.mktemp("chat") / "data", "--no-repl",
                         "--rate-limit", "0")
    yield server, port
    server.kill()
