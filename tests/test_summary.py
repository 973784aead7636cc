"""The history's spoken lines come from the routine file: reworded there, said that way."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from device.core.errors import ConfigError
from device.core.records import HoldRecord
from device.core.routine import SUMMARY_KEYS, load_routine
from device.core.summary import duration_words, growth_line, summary_line

BUILT_IN = resources.files("device.core.routines").joinpath("hamstring.toml").read_text()


def hold(leg: str, held: float = 60, ended: str = "complete", rnd: int = 1,
         steadiness: float | None = None) -> HoldRecord:
    return HoldRecord(leg, rnd, 60, held, ended, steadiness=steadiness)


def routine_with(tmp_path: Path, extra: str, drop: tuple[str, ...] = ()) -> Path:
    """The built-in routine file without the tables in ``drop``, plus ``extra`` TOML."""
    kept: list[str] = []
    skipping = False
    for line in BUILT_IN.splitlines():
        if line.startswith("["):
            skipping = line.strip("[] ") in drop
        if not skipping:
            kept.append(line)
    path = tmp_path / "mine.toml"
    path.write_text("\n".join(kept) + "\n" + extra)
    return path


def test_duration_words() -> None:
    assert [duration_words(s) for s in (0, 1, 59.6, 89, 90, 150, 300)] == [
        "0 seconds", "1 second", "60 seconds", "89 seconds", "1 minute 30 seconds",
        "2 minutes 30 seconds", "5 minutes"]


def test_every_summary_piece_is_in_the_built_in_file() -> None:
    routine = load_routine()
    assert set(routine.summary) == set(SUMMARY_KEYS)
    for key in SUMMARY_KEYS:
        assert f"\n{key} = " in BUILT_IN, key  # worded in the file, not only in code
    assert routine.growth == "Your {leg}-leg hold grows to {duration}."
    assert routine.nudge == "Your hamstrings are waiting. One short stretch today?"


def test_reworded_routine_rewords_summary_and_growth(tmp_path: Path) -> None:
    extra = """
[summary]
complete = "Well stretched."
early = "Some of it."
empty = "Nothing held."
leg = "the {leg} side for {duration}"
leg_holds = "the {leg} side for {duration} in {holds} goes"
ended_early = "cut short"
steady = "rock steady ({score})"
fairly_steady = "mostly steady ({score})"
shaky = "wobbly ({score})"
first_this_week = "first one this week"
this_week = "{sessions} this week"
streak = "{days} days running"
week_and_streak = "{week}; {streak}"
streak_alone = "{streak}"

[progress]
grows = "{Leg} leg: {duration} from now on."
"""
    routine = load_routine(routine_with(tmp_path, extra, drop=("summary", "progress")))
    both = (hold("right"), hold("left"))
    assert summary_line(routine, both, 3, 2) == (
        "Well stretched. The right side for 60 seconds, the left side for 60 seconds. "
        "3 this week; 2 days running.")
    assert summary_line(routine, both, 1, 0) == (
        "Well stretched. The right side for 60 seconds, the left side for 60 seconds. "
        "First one this week.")
    mixed = (hold("right", 150, steadiness=80), hold("right", 150, rnd=2, steadiness=80),
             hold("left", 20, "early", steadiness=60))
    assert summary_line(routine, mixed, 0, 4) == (
        "Some of it. The right side for 5 minutes in 2 goes, rock steady (80). "
        "The left side for 20 seconds, cut short, mostly steady (60). 4 days running.")
    assert summary_line(routine, (hold("left", steadiness=10),), 0, 0) == (
        "Well stretched. The left side for 60 seconds, wobbly (10).")
    assert summary_line(routine, (), 0, 0) == "Nothing held."
    assert growth_line(routine, "left", 90) == "Left leg: 1 minute 30 seconds from now on."


def test_routine_file_without_history_tables_takes_the_built_in_wording(
        tmp_path: Path) -> None:
    mine = load_routine(routine_with(tmp_path, "", drop=("summary", "progress", "nudge")))
    built_in = load_routine()
    assert (mine.summary, mine.growth, mine.nudge) == (
        built_in.summary, built_in.growth, built_in.nudge)
    partial = load_routine(routine_with(tmp_path, '[summary]\ncomplete = "Done."\n',
                                        drop=("summary",)))
    assert partial.summary["complete"] == "Done."
    assert partial.summary["early"] == built_in.summary["early"]


@pytest.mark.parametrize(("extra", "message"), [
    ('[summary]\nbravo = "x"\n', "unknown key summary.bravo"),
    ('[summary]\ncomplete = ""\n', "summary.complete = ''"),
    ("[progress]\ngrows = 3\n", "progress.grows = 3"),
    ('[nudge]\nwhen = "x"\n', "unknown key nudge.when"),
])
def test_bad_history_wording_is_named(tmp_path: Path, extra: str, message: str) -> None:
    section = extra.split("]")[0].strip("[")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_routine(routine_with(tmp_path, extra, drop=(section,)))
