"""Imports at the top: a module of the project imported inside a function is a deliberate
deferral (a heavy optional extra, or a command's own modules kept out of the others'
start-up) and says so in a comment on its line or the line above."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commented(lines: list[str], first: int, last: int) -> bool:
    """A comment on the import's lines, or above the block of imports it stands in."""
    if any("#" in line for line in lines[first - 1: last]):
        return True
    i = first - 2
    while i >= 0 and lines[i].strip().startswith(("from ", "import ", ")")) or \
            i >= 0 and lines[i].startswith(" " * 8) and lines[i].strip().endswith((",", "(")):
        i -= 1
    return i >= 0 and "#" in lines[i]


def _deferred(path: Path) -> list[tuple[int, str]]:
    src = path.read_text(encoding="utf-8")
    lines = src.splitlines()
    found = []
    for fn in ast.walk(ast.parse(src)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] in ("device", "drivers"):
                if not _commented(lines, node.lineno, node.end_lineno or node.lineno):
                    found.append((node.lineno, node.module))
    return found


def test_every_deferred_import_of_our_own_says_why() -> None:
    files = sorted([*ROOT.glob("device/**/*.py"), *ROOT.glob("drivers/**/*.py")])
    assert len(files) > 50
    silent = [f"{p.relative_to(ROOT)}:{line} {mod}" for p in files
              for line, mod in _deferred(p)]
    assert silent == []


def test_the_checker_finds_a_silent_deferral_and_accepts_a_commented_block() -> None:
    silent = ["def f():", "    x = 1", "    from device.core import machine"]
    block = ["def f():", "    # deferred: the screen's extra", "    from device.apps import tui",
             "    from device.core import machine"]
    assert not _commented(silent, 3, 3)
    assert _commented(block, 3, 3) and _commented(block, 4, 4)
