"""The tests themselves: none can pass without testing anything, and none skips under CI=true.

A skip goes through ``tests.tools.need`` (fails under CI=true); an assertion checks
something that could be false. Read from the syntax tree of every test module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import tools

TESTS = Path(__file__).resolve().parent
SKIPS = {"skip", "skipif", "importorskip", "xfail"}  # pytest.X, pytest.mark.X
JUSTIFIED = "justified:"  # a comment on the line or the one above says why


def _dotted(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _findings(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    out: list[tuple[int, str]] = []
    named = set()  # pytest.skip.Exception names the exception, it does not skip
    for node in ast.walk(ast.parse(text, str(path))):  # a parent before its children
        where = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr == "Exception":
            named.add(id(node.value))
        if isinstance(node, ast.Attribute) and id(node) not in named and _dotted(node) in (
                *(f"pytest.{s}" for s in SKIPS), *(f"pytest.mark.{s}" for s in SKIPS)):
            near = " ".join(lines[max(node.lineno - 2, 0):node.lineno])
            if JUSTIFIED not in near:
                why = f"{where}: {_dotted(node)} without a '# {JUSTIFIED}' comment"
                out.append((node.lineno, why))
        if isinstance(node, ast.Assert):
            test = node.test
            if isinstance(test, ast.Constant) and test.value:
                out.append((node.lineno, f"{where}: assert of a constant"))
            if _dotted(test) in ("sys.executable", "sys.argv", "sys.path", "os.environ"):
                out.append((node.lineno, f"{where}: assert {_dotted(test)} is always true"))
    return [finding for _, finding in sorted(out)]


def test_no_test_skips_on_its_own_or_asserts_what_is_always_true() -> None:
    found = [f for path in sorted(TESTS.glob("*.py")) for f in _findings(path)]
    assert found == []


def test_the_checker_catches_a_raw_skip_and_an_empty_assert(tmp_path: Path) -> None:
    bad = tmp_path / "test_bad.py"  # justified: the skips and asserts below are its sample
    bad.write_text("import sys\nimport pytest\n"
                   "pytest.importorskip('device.core.machine')\n"
                   "@pytest.mark.skipif(True, reason='x')\n"
                   "def test_x():\n    assert sys.executable\n    assert True\n"
                   "    # justified: shown to pass\n    pytest.skip('ok')\n")
    assert [f.split(": ", 1)[1] for f in _findings(bad)] == [
        "pytest.importorskip without a '# justified:' comment",
        "pytest.mark.skipif without a '# justified:' comment",
        "assert sys.executable is always true",
        "assert of a constant",
    ]


def test_need_skips_outside_ci_even_from_a_module_top(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "CI", False)
    tools.need(True, "a tool", "apt-get install a-tool")  # there: nothing happens
    with pytest.raises(pytest.skip.Exception) as skipped:
        tools.need(False, "a tool", "apt-get install a-tool")
    assert skipped.value.allow_module_level  # a module's top may call it, not only a test
    assert "apt-get install a-tool" in str(skipped.value)


def test_need_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "CI", True)
    with pytest.raises(pytest.fail.Exception, match="a tool is missing under CI=true"):
        tools.need(False, "a tool", "apt-get install a-tool")
