"""What a new user trips on: `config` shows what is in effect, fakes say they are fakes,
messages state the real limits."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from device.apps.cli import main


def test_config_prints_the_configuration_in_effect(tmp_path, capsys) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[session]\nhold_seconds = 90\n")
    assert main(["config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"read from {path}" in out
    assert "hold_seconds = 90  # (changed)" in out
    assert tomllib.loads(out)["session"]["hold_seconds"] == 90


def test_config_finds_the_users_file_like_the_box_does(tmp_path, capsys, monkeypatch) -> None:
    home = tmp_path / "xdg"
    (home / "stretch-companion").mkdir(parents=True)
    (home / "stretch-companion" / "config.toml").write_text("[session]\nrounds = 2\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert tomllib.loads(out)["session"]["rounds"] == 2 and "rounds = 2  # (changed)" in out


def test_config_without_a_file_says_it_shows_the_defaults(capsys) -> None:
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "built-in defaults (no config file found)" in out and "  # (changed)" not in out


def test_config_help_says_what_it_prints(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "print the configuration in effect" in out and "show or check" not in out


def test_selftest_mock_says_voice_and_sensor_are_fakes(capsys) -> None:
    assert main(["selftest", "--mock"]) == 0
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "a fake" in lines["voice"] and "sound device" not in lines["voice"]
    assert "a fake" in lines["sensor"] and "/dev/i2c" not in lines["sensor"]


@pytest.mark.parametrize("kg", ["0", "-1", "201", "nan", "0.000001", "0.9"])
def test_calibrate_states_the_real_weight_range(capsys, kg: str) -> None:
    """Issue 22: --kg 0.000001 was taken (630,800,000 counts per kg: a 6 kg pull read 0)."""
    assert main(["calibrate", "--mock", "--kg", kg]) == 2
    err = capsys.readouterr().err
    assert "must be a known weight from 1 to 200 kg" in err
    assert "from 0" not in err


# ---- issue 22: no traceback from any input -------------------------------------------------

ROOT22 = Path(__file__).resolve().parent.parent


def _run(args: list[str], tmp_path: Path, stdout: Any = subprocess.PIPE
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("STATE_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "device", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT22, env=env, timeout=120)


@pytest.mark.parametrize("args", [["config", "--default"], ["web-code"],
                                  ["selftest", "--mock"]])
def test_stdout_on_dev_full_is_one_line(tmp_path: Path, args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        r = _run(args, tmp_path, stdout=full)
    assert r.returncode == 74 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "stretch-companion: cannot write the output (No space left on device)")
    assert "Exception ignored" not in r.stderr


@pytest.mark.parametrize("where", ["file", "/dev/null"])
@pytest.mark.parametrize("command", ["web-code", "web-forget"])
def test_state_dir_that_is_not_a_folder_is_one_line(tmp_path: Path, where: str,
                                                    command: str) -> None:
    target = tmp_path / "a-file" if where == "file" else Path(where)
    if where == "file":
        target.write_text("x")
    r = _run([command, "--state-dir", str(target)], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "not a folder" in r.stderr


def test_a_history_name_too_long_is_one_line(tmp_path: Path) -> None:
    r = _run(["sim", "--headless", "--script", "press@1", "--until", "2",
              "--history", "a" * 300], tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "File name too long" in r.stderr and len(r.stderr) < 200


@pytest.mark.parametrize("option, most", [("--weeks", "5200"), ("--limit", "1000000")])
def test_history_huge_numbers_are_usage_errors(tmp_path: Path, option: str,
                                               most: str) -> None:
    from device.store.sqlite import History
    from tests.mqtt_box import session

    db = tmp_path / "h.db"
    with History(db) as h:
        h.record(session(1))
    for value in ("1000000000", "99999999999999999999"):
        r = _run(["history", "--history", str(db), option, value], tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert f"must be from 1 to {most}" in r.stderr and "history file" not in r.stderr
