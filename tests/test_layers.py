"""The house by role, kept so by reading every import (``ast``, not a regex).

- ``device/core/``: the pure core imports only itself and the standard library.
- ``device/store/``: the core and the standard library.
- ``device/box/``: the core, the store's paths never, drivers' protocols and parts.
- ``device/addons/``: the core, the box's port (never the loop), the store and drivers; an
  add-on reaches another only through the port (``provide``/``find``), never by import,
  but for the few pairs named below.
- ``device/apps/``: the programs; only they compose, nobody imports them.
- ``drivers/``: nothing of ``device/``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STDLIB = sys.stdlib_module_names

# add-on -> add-on imports that are not a reach into another's insides
ADDON_PAIRS = {
    ("device.addons.simstrap", "device.addons.strap"),  # the simulated strap IS the strap add-on
    ("device.addons.mqtt", "device.addons.page"),  # the page's address: a shared value type
    ("device.addons.web", "device.addons.page"),
    ("device.addons.control", "device.addons.page"),  # PairingVoice: a shared value type
    ("device.addons.mqtt", "device.addons.mqtt_inbound"),  # its own helpers, split off
    ("device.addons.service", "device.addons.notify"),  # sd_notify's own client
    ("device.addons.mqtt_unit", "device.addons.mqtt"),  # the drop-in of the broker's address
}


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (relative ones made absolute), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def _files(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, folder
    return files


def _top(name: str) -> str:
    return name.split(".")[0]


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _offences(folder: str, allowed) -> list[str]:
    out = []
    for path in _files(folder):
        mod = _module(path)
        for line, name in _imports(path):
            if _top(name) in STDLIB or name == "__future__":
                continue
            if not allowed(mod, name):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


def test_the_core_imports_only_the_core() -> None:
    assert _offences("device/core", lambda mod, name: _within(name, "device.core")) == []


def test_the_store_imports_only_the_core_and_itself() -> None:
    assert _offences("device/store",
                     lambda mod, name: _within(name, "device.core", "device.store")) == []


def test_the_box_imports_the_core_and_drivers_never_add_ons_or_programs() -> None:
    assert _offences("device/box", lambda mod, name: _within(
        name, "device.core", "device.box", "drivers")) == []


def test_add_ons_import_the_core_the_port_the_store_and_drivers_only() -> None:
    def allowed(mod: str, name: str) -> bool:
        if _within(name, "device.box.loop"):
            return False  # the loop is reached only through the port
        if _within(name, "device.core", "device.box", "device.store", "drivers"):
            return True
        if _within(name, "device.addons"):
            own = mod.split(".")[:3] == name.split(".")[:3]  # within one add-on package
            return own or any(mod == a and _within(name, b) or _within(mod, a) and name == b
                              for a, b in ADDON_PAIRS)
        # third-party libraries an add-on wraps (paho, starlette, uvicorn)
        return not _within(name, "device", "tests", "bench")
    assert _offences("device/addons", allowed) == []


def test_only_the_programs_compose() -> None:
    outside = [p for p in _files("device") if "apps" not in p.relative_to(ROOT).parts
               and p.name != "__main__.py"]
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in outside
           for line, name in _imports(p) if _within(name, "device.apps")]
    assert bad == []


def test_drivers_import_nothing_of_the_product() -> None:
    assert _offences("drivers", lambda mod, name: not _within(name, "device")) == []


def test_the_checker_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    sample = ROOT / "device" / "core" / "machine.py"
    names = {n for _, n in _imports(sample)}
    assert "device.core.breath" in names  # a plain top-of-file import is seen
    assert all(not _within(n, "device.apps") for n in names)
