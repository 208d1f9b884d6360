import fcntl
import os
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


@pytest.fixture(scope="session", autouse=True)
def children_share_one_bytecode_cache(tmp_path_factory) -> None:
    """The suite starts some 600 `python -m netlab`s. Where PYTHONDONTWRITEBYTECODE is set (as
    on this project's machines) each one compiled netlab's ~90 modules again, a quarter of
    its start-up CPU; they share one cache instead, in pytest's own temporary directory
    (one per worker), so the source tree still gets no __pycache__ from them."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.getbasetemp() / "pycache")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A directory for the whole run: under pytest-xdist the workers' temporary directories
    share their parent."""
    basetemp = tmp_path_factory.getbasetemp()
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


@pytest.fixture(autouse=True)
def share_the_machine(request, run_dir: Path):
    """`make test` runs three tests at a time (pytest-xdist). A test marked `alone` has the
    machine to itself: it promises a bound in seconds, or loads the machine enough to put
    another test's at risk. It takes the run's lock exclusively, every other test takes it
    shared; a turnstile taken first makes a waiting `alone` test go before tests that come
    after it (the kernel's flock is not fair). Serially (`-n 0`) nothing waits."""
    alone = request.node.get_closest_marker("alone") is not None
    with (run_dir / "machine.lock").open("a") as lock:
        with (run_dir / "turnstile.lock").open("a") as turnstile:
            fcntl.flock(turnstile, fcntl.LOCK_EX)
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield


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
