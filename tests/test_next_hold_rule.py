"""One next-hold rule (``device.core.progression.next_hold``): the box's plan (habit) and the
``stats`` message (MQTT) both ask it, so they cannot drift apart."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import device.addons.habit as habit
import device.addons.mqtt as mqtt
from device.core.config import Config, with_overrides
from device.core.progression import next_hold
from device.core.records import HoldRecord, LegSession

NOW = datetime(2026, 5, 6, 7, 0, tzinfo=UTC)


def done(days_ago: int, planned_s: float = 60.0, tightness: str | None = None) -> LegSession:
    hold = HoldRecord("right", 1, planned_s, planned_s, "complete", tightness=tightness)
    return LegSession(NOW - timedelta(days=days_ago), "complete", (hold,))


def config(**kw: dict) -> Config:
    return with_overrides(Config(), **kw)


def unread() -> Sequence[LegSession]:
    raise AssertionError("the history was read although the rule does not need it")


def test_the_newest_answer_sets_the_hold_when_the_routine_asks() -> None:
    past = [done(1, 90.0, "very_tight"), done(2), done(3)]
    cfg = config(session={"ask_tightness": True, "tightness_step_seconds": 30},
                 history={"progression": "steady"})
    assert next_hold(cfg, lambda: past) == (120.0, False)
    assert next_hold(cfg, lambda: [done(1, 90.0, "easy")]) == (60.0, False)


def test_steady_sessions_grow_the_hold_unless_progression_is_off() -> None:
    past = [done(1), done(2), done(3)]
    steady = config(session={"ask_tightness": False},
                    history={"progression": "steady", "step_seconds": 15})
    assert next_hold(steady, lambda: past) == (75.0, True)
    assert next_hold(steady, lambda: past[:2]) == (60.0, False)
    off = config(session={"ask_tightness": False, "hold_seconds": 90},
                 history={"progression": "off"})
    assert next_hold(off, unread) == (90.0, False)  # no store read for nothing


def test_unanswered_holds_fall_back_to_the_progression() -> None:
    cfg = config(session={"ask_tightness": True}, history={"progression": "steady"})
    assert next_hold(cfg, lambda: [done(1), done(2), done(3)]) == (75.0, True)


def _progression_names(module: object) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module == "device.core.progression" for alias in node.names}


@pytest.mark.parametrize("module", [habit, mqtt], ids=["habit", "mqtt"])
def test_habit_and_mqtt_ask_the_one_rule(module: object) -> None:
    names = _progression_names(module)
    assert "next_hold" in names
    assert not names & {"next_hold_seconds", "tightness_plan"}  # no second copy of the rule


def test_mqtt_stats_give_each_legs_hold_by_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    class Store:
        def leg_progress(self, leg: str) -> list[LegSession]:
            return [done(1), done(2), done(3)] if leg == "right" else []

    cfg = config(session={"ask_tightness": False, "legs": ["right", "left"]},
                 history={"progression": "steady"})
    assert mqtt.next_holds(Store(), cfg) == {"right": 75.0, "left": 60.0}  # type: ignore[arg-type]
    asked: list[Config] = []
    monkeypatch.setattr(mqtt, "next_hold", lambda c, s: (asked.append(c), (42.0, False))[1])
    assert mqtt.next_holds(Store(), cfg) == {"right": 42.0, "left": 42.0}  # type: ignore[arg-type]
    assert asked == [cfg, cfg]
