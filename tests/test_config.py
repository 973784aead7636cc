"""Configuration: defaults, every bad value named with what is allowed, exit 78."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from device.apps.cli import main
from device.core.config import Config, default_config_text, load_config, parse_config
from device.core.errors import ConfigError


def test_default_file_round_trips_to_the_defaults() -> None:
    assert parse_config(tomllib.loads(default_config_text())) == Config()


def test_defaults_match_the_design() -> None:
    c = Config()
    assert (c.pins.button, c.pins.led, c.pins.buzzer) == (17, 18, 27)
    assert c.session.hold_seconds == 60 and c.session.long_press_seconds == 2
    assert (c.breath.inhale, c.breath.hold_in, c.breath.exhale, c.breath.hold_out) == (4, 0, 6, 0)
    assert c.session.legs == ("right", "left")


@pytest.mark.parametrize(
    "toml, words",
    [
        ("[session]\nhold_seconds = 30", ["session.hold_seconds", "30", "60 to 300"]),
        ("[session]\nhold_seconds = 301", ["session.hold_seconds", "301", "60 to 300"]),
        ("[session]\nhold_secs = 60", ["session.hold_secs", "did you mean 'hold_seconds'"]),
        ("[sesion]\nrounds = 2", ["sesion", "did you mean 'session'"]),
        ("[buzzer]\nkind = \"loud\"", ["buzzer.kind", "'loud'", "'active', 'passive'"]),
        ("[session]\nswitch = \"foot\"", ["session.switch", "'button', 'auto'"]),
        ("[session]\nlegs = [\"right\", \"middle\"]", ["session.legs", "'right', 'left'"]),
        ("[session]\nrounds = 1.5", ["session.rounds", "whole number"]),
        ("[voice]\nenabled = \"yes\"", ["voice.enabled", "true or false"]),
        ("[voice]\nvolume = 2", ["voice.volume", "0 to 1"]),
        ("[session]\ntick_seconds = 0.5", ["session.tick_seconds", "0 (off)"]),
        ("[breath]\ninhale = 1\nexhale = 2", ["breath", "breaths per minute", "2 to 12"]),
        ("[breath]\ninhale = 15\nexhale = 20", ["breath", "breaths per minute", "2 to 12"]),
        ("[pins]\nled = 17", ["pins.led", "already used by pins.button"]),
        ("[pins]\nbutton = 40", ["pins.button", "0 to 27"]),
        ("[light]\nidle = \"on\"", ["light.idle", "'off', 'glow'"]),
    ],
)
def test_bad_values_name_key_value_and_allowed(toml: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(tomllib.loads(toml))
    for word in words:
        assert word in str(err.value)


def test_breath_limits_are_inclusive() -> None:
    fast = parse_config(tomllib.loads("[breath]\ninhale = 2\nexhale = 3"))
    slow = parse_config(tomllib.loads("[breath]\ninhale = 12\nexhale = 18"))
    assert 60 / fast.breath.period == 12 and (fast.breath.inhale, fast.breath.exhale) == (2, 3)
    assert 60 / slow.breath.period == 2 and (slow.breath.inhale, slow.breath.exhale) == (12, 18)
    with pytest.raises(ConfigError, match="12.5 breaths per minute: must be 2 to 12"):
        parse_config(tomllib.loads("[breath]\ninhale = 2\nexhale = 2.8"))  # just too fast
    with pytest.raises(ConfigError, match="1.9 breaths per minute: must be 2 to 12"):
        parse_config(tomllib.loads("[breath]\ninhale = 12\nexhale = 19.5"))  # just too slow


@pytest.mark.parametrize(
    "toml, words",
    [
        ("[session]\nhold_seconds = 10\n", ["session.hold_seconds = 10", "60 to 300"]),
        ("[voice]\nratee = 3\n", ["unknown key voice.ratee", "rate"]),
        ("this is = not [toml", ["not valid TOML"]),
    ],
)
def test_cli_bad_config_one_line_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, words: list[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    code = main(["sim", "--headless", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 78
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err


def test_missing_config_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--headless", "--config", "/nonexistent/c.toml"]) == 78
    assert "/nonexistent/c.toml" in capsys.readouterr().err


def test_search_order_xdg_then_etc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "stretch-companion").mkdir()
    (tmp_path / "stretch-companion" / "config.toml").write_text("[session]\nrounds = 3\n")
    assert load_config().session.rounds == 3


def test_config_default_command_prints_a_valid_commented_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "--default"]) == 0
    text = capsys.readouterr().out
    assert "# length of each hold (s)" in text
    assert parse_config(tomllib.loads(text)) == Config()


def test_bad_routine_file_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routine = tmp_path / "r.toml"
    routine.write_text('name = "x"\n[setup]\nintro = "hi"\nsteps = []\nready = "go"\n')
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[routine]\nfile = "{routine}"\n')
    assert main(["sim", "--headless", "--config", str(cfg)]) == 78
    assert "r.toml: missing table [hold]" in capsys.readouterr().err


def test_custom_routine_with_same_schema_is_used(tmp_path: Path) -> None:
    from importlib import resources

    from device.core.routine import load_routine

    text = resources.files("device.core.routines").joinpath("hamstring.toml").read_text()
    text = text.replace('name = "hamstring"', 'name = "gentle"')
    path = tmp_path / "gentle.toml"
    path.write_text(text)
    assert load_routine(path).name == "gentle"
    path.write_text(text.replace("[finish]", "[finish]\nloud = true"))
    with pytest.raises(ConfigError, match="finish.loud"):
        load_routine(path)


def test_light_low_must_be_below_high() -> None:
    with pytest.raises(ConfigError, match="light.low = 0.5: must be below light.high = 0.2"):
        parse_config(tomllib.loads("[light]\nlow = 0.5\nhigh = 0.2\n"))


def test_parts_cannot_sit_on_the_sensors_i2c_pins() -> None:
    with pytest.raises(ConfigError, match="pins.button = 2: GPIO2 and GPIO3"):
        parse_config(tomllib.loads("[pins]\nbutton = 2\n[sensor]\nenabled = true\n"))
    parse_config(tomllib.loads("[pins]\nbutton = 2\n"))  # fine without the sensor


def test_an_older_routine_file_takes_the_new_lines_from_the_built_in_one(tmp_path: Path) -> None:
    # a routine written before issue 11: plain step strings, no safety line, no second-leg
    # list, no [ask] or [idle]; it still loads, each step with the configured pause
    from device.core.routine import load_routine

    path = tmp_path / "old.toml"
    path.write_text('name = "old"\n[setup]\nintro = "Hi."\nsteps = ["Lie down.", "Strap on."]\n'
                    'ready = "Go."\n[hold]\nstart = "Hold."\nten_left = "Ten."\n'
                    '[switch]\ntext = "a"\nauto = "b"\nnext_round = "c"\nnext_round_auto = "d"\n'
                    '[finish]\ntext = "Done."\n[cancel]\ntext = "Off."\n')
    routine = load_routine(path)
    assert [(s.text, s.pause_s) for s in routine.steps] == [("Lie down.", None),
                                                             ("Strap on.", None)]
    builtin = load_routine()
    assert routine.safety == builtin.safety and routine.switch_steps == builtin.switch_steps
    assert routine.ask == builtin.ask and routine.idle == builtin.idle


def test_a_step_pause_is_checked(tmp_path: Path) -> None:
    from importlib import resources

    from device.core.routine import load_routine

    text = resources.files("device.core.routines").joinpath("hamstring.toml").read_text()
    path = tmp_path / "r.toml"
    path.write_text(text.replace("pause = 6 }", "pause = -1 }", 1))
    with pytest.raises(ConfigError, match=r"setup.steps\[0\].pause = -1"):
        load_routine(path)


def test_an_unreadable_home_config_is_passed_over(tmp_path, monkeypatch) -> None:
    """Under systemd's ProtectHome= the user's ~/.config cannot even be looked at."""
    import device.core.config as config_module

    class Hidden(type(tmp_path)):
        def is_file(self) -> bool:
            raise PermissionError(13, "Permission denied", str(self))

    system = tmp_path / "etc.toml"
    system.write_text("[session]\nrounds = 2\n")
    monkeypatch.setattr(config_module, "config_paths",
                        lambda: [Hidden("/home/stretch/.config/x.toml"), system])
    assert config_module.load_config().session.rounds == 2
