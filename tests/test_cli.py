"""The command line: a scripted headless session and its JSON-lines transcript."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device.apps.cli import main

SCHEMA = {
    "state": {"state", "leg", "round"},
    "button": {"action"},
    "speak": {"text", "key", "duration_s"},
    "buzz": {"name", "seconds"},
    "led": {"value"},
    "hold": {"leg", "round", "planned_s", "held_s", "ended", "pre_s"},
    "session": {"outcome", "holds"},
    "speak_dropped": {"key", "text"},
    "speak_cut": {"key", "why"},
    "tightness": {"leg", "round", "answer", "next_s"},
    "history": {"outcome", "saved"},
    "nudge": {"on"},
}


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_headless_full_session_transcript(tmp_path: Path, capsys) -> None:
    events_file = tmp_path / "events.jsonl"
    code = main(["sim", "--headless", "--script", "press@1,press@200",
                 "--events", str(events_file)])
    assert code == 0
    events = read_events(events_file)
    for e in events:
        assert set(e) - {"t", "kind"} == SCHEMA[e["kind"]], e
    times = [e["t"] for e in events]
    assert times == sorted(times)
    holds = [e for e in events if e["kind"] == "hold"]
    assert [(h["leg"], h["held_s"], h["ended"]) for h in holds] == [
        ("right", 60.0, "complete"), ("left", 60.0, "complete")]
    assert [e["state"] for e in events if e["kind"] == "state"][-2:] == ["done", "idle"]
    assert all(0.0 <= e["value"] <= 1.0 for e in events if e["kind"] == "led")
    out = capsys.readouterr().out
    assert "hold complete: right leg, 60.000 s of 60 s" in out
    assert "voice: " in out


def test_headless_without_script_runs_a_whole_session(tmp_path: Path) -> None:
    events_file = tmp_path / "e.jsonl"
    assert main(["sim", "--headless", "--quiet", "--events", str(events_file)]) == 0
    holds = [e for e in read_events(events_file) if e["kind"] == "hold"]
    assert [h["leg"] for h in holds] == ["right", "left"]


def test_headless_until_stops_early(tmp_path: Path) -> None:
    events_file = tmp_path / "e.jsonl"
    assert main(["sim", "--headless", "--quiet", "--script", "press@1", "--until", "30",
                 "--events", str(events_file)]) == 0
    events = read_events(events_file)
    assert max(e["t"] for e in events) <= 30 and not [e for e in events if e["kind"] == "hold"]


def test_headless_long_press_cancels(tmp_path: Path) -> None:
    events_file = tmp_path / "e.jsonl"
    main(["sim", "--headless", "--quiet", "--script", "press@1,long@30",
          "--events", str(events_file)])
    events = read_events(events_file)
    assert [e["outcome"] for e in events if e["kind"] == "session"] == ["cancelled"]


@pytest.mark.parametrize("script", ["jump@3", "press@soon", "press", "press@-1"])
def test_bad_script_is_a_clear_error(script: str, capsys) -> None:
    assert main(["sim", "--headless", "--script", script]) == 2
    err = capsys.readouterr().err
    assert "script item" in err and "Traceback" not in err


def test_console_entry_point_runs_in_a_child_process(tmp_path: Path) -> None:
    events_file = tmp_path / "e.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "device", "sim", "--headless", "--quiet",
         "--script", "press@1,press@2,press@2.3,press@90", "--events", str(events_file)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    holds = [e for e in read_events(events_file) if e["kind"] == "hold"]
    assert [h["leg"] for h in holds] == ["right", "left"]


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for word in ("run", "sim", "config"):
        assert word in out


@pytest.mark.parametrize("argv, words", [
    (["--events", "/nonexistent/dir/e.jsonl"], "--events /nonexistent/dir/e.jsonl"),
    (["--until", "nan"], "--until nan"),
    (["--until", "-5"], "--until -5"),
    (["--speed", "nan"], "--speed nan"),
    (["--script", "press@nan"], "press@nan"),
    (["--script", "press@inf"], "press@inf"),
    (["--sensor", "--script", "press@1,tension@5:1e308"], "the pull (kg)"),
    (["--sensor", "--script", "press@1,bounce@5:-2"], "the bouncing time"),
    (["--start", "yesterday"], "--start"),
])
def test_bad_options_are_one_clear_line(argv: list[str], words: str, capsys) -> None:
    assert main(["sim", "--headless", "--no-history", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_history_weeks_must_be_positive(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["history", "--weeks", "0"])
    assert exit_.value.code == 2 and "must be from 1 to 5200" in capsys.readouterr().err


def test_config_check_also_checks_the_routine(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[routine]\nfile = "/nonexistent/routine.toml"\n')
    assert main(["config", "--check", str(cfg)]) == 78
    assert "routine.file" in capsys.readouterr().err


def test_output_closed_early_is_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        f"{sys.executable} -m device sim --headless --no-history | head -2",
        shell=True, capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_headless_run_ending_mid_session_records_it_interrupted(tmp_path: Path, capsys) -> None:
    db = tmp_path / "h.db"
    assert main(["sim", "--headless", "--quiet", "--history", str(db), "--until", "30"]) == 0
    capsys.readouterr()
    main(["history", "--history", str(db), "--json"])
    assert [s["outcome"] for s in json.loads(capsys.readouterr().out)] == ["interrupted"]
