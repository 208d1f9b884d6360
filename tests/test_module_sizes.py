"""No module over 450 lines and no class over 250 (docs/design.md): a newcomer reads one
file for one job. A module that grows past it is split, not excused."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import netlab

ROOT = Path(netlab.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 250


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_and_its_classes_stay_readable_in_one_sitting(path):
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES
    too_long = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES}
    assert not too_long, f"classes over {MAX_CLASS_LINES} lines: {too_long}"
