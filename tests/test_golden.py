"""The transcript of whole scripted sessions, byte for byte against a golden copy.

A change that moves, adds or drops any event shows here. When a change is meant to alter
what the box does, regenerate with ``GOLDEN_REGEN=1 python -m pytest tests/test_golden.py``
and read the diff of the readable transcript before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device.apps.cli import main

GOLDEN = Path(__file__).parent / "golden"
START = "2026-01-05T08:00:00+00:00"
# a press moves one set-up step, a double press goes to the hold (20.4); bouncing, slack, a
# relative over-pull and one above the ceiling; after the hold two presses (tight); the
# left leg's short set-up skipped, its hold ended early, three presses (very tight)
STRAP_SCRIPT = ("press@1,tension@3:0,press@20,press@20.3,tension@22:6,bounce@30:4,tension@45:0,"
                "tension@50:14,tension@55:6,tension@62:25,tension@66:6,press@85,press@85.3,"
                "press@100,press@101,press@101.3,tension@103:5,press@130,tension@131:0,"
                "press@133,press@133.3,press@133.6,unplug@150,replug@158")
CASES = {
    "two_legs_sensor": ["--sensor", "--script", STRAP_SCRIPT],
    "default_session": [],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_transcript_matches_golden(name: str, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    argv = ["sim", "--headless", "--quiet", "--history", str(tmp_path / "h.db"),
            "--start", START, "--events", str(events), *CASES[name]]
    assert main(argv) == 0
    got = events.read_bytes()
    golden = GOLDEN / f"{name}.jsonl"  # plain text, so a change reads as a diff
    if os.environ.get("GOLDEN_REGEN"):
        golden.write_bytes(got)
    want = golden.read_bytes()
    if got != want:
        got_lines, want_lines = got.splitlines(), want.splitlines()
        for i, (g, w) in enumerate(zip(got_lines, want_lines, strict=False)):
            assert g == w, f"line {i + 1} differs"
        assert len(got_lines) == len(want_lines)
