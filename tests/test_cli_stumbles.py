"""What a new user trips on: `config` shows what is in effect, fakes say they are fakes,
messages state the real limits."""

from __future__ import annotations

import tomllib

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
