"""The sans-IO packages import no socket, thread, clock or file API (design.md).

Read from the modules' own import statements (ast), so that a lazy import inside a
function counts too, and what they import from the project is followed: a sans-IO
module may only lean on modules that are sans-IO themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import netlab

ROOT = Path(netlab.__file__).parent
#: The sans-IO modules: the wire protocol, the chat rules, the formats of the data files and
#: the table of a connection's states in the loop.
SANS_IO = sorted([*ROOT.glob("wire/*.py"), *ROOT.glob("chat/*.py"), ROOT / "chat_core.py",
                  ROOT / "store" / "records.py", ROOT / "loop" / "connection_states.py"])
#: What none of them may import: sockets, threads, clocks, files and processes.
FORBIDDEN = {"socket", "ssl", "selectors", "select", "asyncio", "threading", "_thread",
             "concurrent", "multiprocessing", "queue", "time", "os", "io", "shutil", "tempfile",
             "pathlib", "subprocess", "signal", "fcntl"}


def imports(path: Path) -> set[str]:
    """Every module `path` imports, wherever in it the import statement stands."""
    names = set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree) if _type_checking(block) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _type_checking(node: ast.AST) -> bool:
    """An `if TYPE_CHECKING:` block: its imports never run."""
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def project_module(name: str) -> Path | None:
    """The file of a netlab module, if `name` is one."""
    if not name.startswith("netlab."):
        return None
    path = ROOT.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_sans_io_module_reaches_no_socket_thread_clock_or_file(path):
    seen, todo, reached = set(), [path], {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in imports(module):
            if name.split(".")[0] in FORBIDDEN:
                reached[name] = module.relative_to(ROOT)
            elif (inner := project_module(name)) is not None:
                todo.append(inner)
    assert not reached, f"imported (module: by whom): {reached}"


def test_the_chat_core_names_hashes_as_jobs_and_never_calls_the_crypto():
    """Its time comes from the loop (`Chat.advance`), its hashes are jobs it names
    (chat/jobs.py), and it reads accounts and history only through what the loop gives it."""
    assert "netlab.crypto" not in imports(ROOT / "chat_core.py")


def test_the_check_sees_a_forbidden_import(tmp_path):
    module = tmp_path / "leaky.py"
    module.write_text("def later():\n    import time\n    return time.time()\n")
    assert imports(module) == {"time"}
