"""What a session leaves behind when it stops early, when the store is slow or locked,
and when nothing can be written: the hold in progress, the history off the loop, the
unsaved session kept in memory and said so."""

from __future__ import annotations

import json
from pathlib import Path

from device.cli import main
from device.store.sqlite import History

START = "2026-01-05T08:00:00+00:00"


def headless(tmp_path: Path, script: str, *extra: str) -> list[dict]:
    events = tmp_path / "events.jsonl"
    argv = ["sim", "--headless", "--quiet", "--history", str(tmp_path / "h.db"),
            "--start", START, "--events", str(events), "--script", script, *extra]
    assert main(argv) == 0
    return [json.loads(line) for line in events.read_text().splitlines()]


def test_a_cancelled_hold_is_in_the_transcript_and_the_history(tmp_path: Path) -> None:
    got = headless(tmp_path, "press@1,press@8,long@38")
    hold = [e for e in got if e["kind"] == "hold"]
    assert [(h["leg"], h["round"], h["planned_s"], h["ended"]) for h in hold] == \
        [("right", 1, 60.0, "cancelled")]
    assert abs(hold[0]["held_s"] - 31.9) < 0.2  # the long press is told apart after 2 s
    session = next(e for e in got if e["kind"] == "session")
    assert session["outcome"] == "cancelled" and session["holds"] == 1
    with History(tmp_path / "h.db") as h:
        (stored,) = h.recent()
    assert stored.outcome == "cancelled"
    assert [(x.leg, x.ended) for x in stored.holds] == [("right", "cancelled")]


def test_an_interrupted_hold_is_recorded(tmp_path: Path) -> None:
    got = headless(tmp_path, "press@1,press@8", "--until", "50")
    hold = [e for e in got if e["kind"] == "hold"]
    assert [(h["ended"], round(h["held_s"], 1)) for h in hold] == [("interrupted", 41.9)]
    with History(tmp_path / "h.db") as h:
        (stored,) = h.recent()
    assert stored.outcome == "interrupted" and stored.holds[0].ended == "interrupted"
