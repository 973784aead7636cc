"""Shared fixtures: mock pins per test, virtual time, a recording voice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero import Device

from device.apps.builder import Box
from device.apps.sim import make_sim
from device.core.config import Config, with_overrides


class Events(list):
    """A listener that keeps every event; helpers to pick kinds."""

    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self if e["kind"] == kind]

    def states(self) -> list[str]:
        return [e["state"] for e in self.kind("state")]


@pytest.fixture(autouse=True)
def private_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test (nor a child process it starts) writes to the real state or cache folders."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_STATE_HOME", str(base / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "config"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)


@pytest.fixture(autouse=True)
def no_global_pin_factory() -> Iterator[None]:
    """Every device gets its factory passed in; make sure none leaks into the global one."""
    saved = Device.pin_factory
    yield
    Device.pin_factory = saved


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def make_box(events: Events) -> Iterator[Callable[..., Box]]:
    """Build simulated boxes on fresh mock pins and virtual time; closed after the test."""
    boxes: list[Box] = []

    def make(config: Config | None = None, **sections: dict[str, Any]) -> Box:
        cfg = with_overrides(config or Config(), **sections) if sections else (config or Config())
        box = make_sim(cfg, listeners=[events])
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.close()
