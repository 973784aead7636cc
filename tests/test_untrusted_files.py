"""Files that look valid are checked for meaning (issue 22): routine lines hold only
known placeholders, a NUL in a file name is one clear line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.core.errors import ConfigError
from device.core.routine import FIELDS, _builtin_data, check_line, fill, parse_routine

ROOT = Path(__file__).resolve().parent.parent


def routine_with(intro: str) -> dict:
    data = _builtin_data()
    data["setup"] = {**data["setup"], "intro": intro}
    return data


@pytest.mark.parametrize("intro, why", [
    ("{leg:>999999999} leg first.", "no format spec"),
    ("{leg.__class__} leg first.", "unknown placeholder"),
    ("{leg[0]} leg first.", "unknown placeholder"),
    ("{foo} leg first.", "unknown placeholder {foo}"),
    ("{leg!r} leg first.", "no format spec or conversion"),
    ("{0} leg first.", "unknown placeholder"),
    ("{leg leg first.", "a lone {"),
    ("leg} first.", "a lone {"),
])
def test_a_routine_line_with_more_than_words_is_refused(intro: str, why: str) -> None:
    t0 = time.process_time()
    with pytest.raises(ConfigError) as e:
        parse_routine(routine_with(intro), "mine.toml")
    assert time.process_time() - t0 < 5  # never formats the line to find out
    assert str(e.value).startswith("routine setup.intro = ") and why in str(e.value)


def test_known_placeholders_and_braces_are_fine() -> None:
    r = parse_routine(routine_with("{Leg} leg first, then the {other}; {{braces}} stay."))
    assert fill(r.intro, leg="right", other="left") == \
        "Right leg first, then the left; {braces} stay."
    assert all(check_line("{" + f + "}") is None for f in FIELDS)
    # fill never evaluates a spec, even on a line that skipped the check
    assert fill("{leg:>999999999}|{leg.__class__}", leg="right") == \
        "{leg:>999999999}|{leg.__class__}"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "device", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_config_check_refuses_a_routine_file_with_a_format_spec(tmp_path: Path) -> None:
    routine = tmp_path / "r.toml"
    text = (ROOT / "device/core/routines/hamstring.toml").read_text()
    import re

    text = re.sub(r'(?m)^intro = ".*"$', 'intro = "{leg:>999999999} leg first."', text,
                  count=1)
    assert "999999999" in text
    routine.write_text(text)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[routine]\nfile = "{routine}"\n')
    r = run_cli("config", "--check", str(cfg))
    assert r.returncode == 78 and r.stderr.count("\n") == 1, r.stderr
    assert "no format spec" in r.stderr and "Traceback" not in r.stderr


def test_a_nul_byte_in_routine_file_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[routine]\nfile = "a\\u0000b.toml"\n')
    r = run_cli("config", "--check", str(cfg))
    assert r.returncode == 78 and r.stderr.count("\n") == 1, r.stderr
    assert "NUL" in r.stderr
