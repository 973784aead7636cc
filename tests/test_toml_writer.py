"""One TOML writer (``device.core.config.toml_value``): what it writes reads back as the same
value, and both the default config file and the phone page's settings write through it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from device.addons.web import settings
from device.core import config
from device.core.config import default_config_text, parse_config, toml_value

SCALARS = (st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False, allow_infinity=True) | st.text())
VALUES = SCALARS | st.lists(st.booleans()) | st.lists(st.integers(-1000, 1000)) \
    | st.lists(st.text(max_size=8)) | st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@given(VALUES)
def test_every_value_reads_back_as_itself(value: Any) -> None:
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == _plain(value)


def test_control_characters_and_quotes_are_escaped() -> None:
    text = 'a "b" \\c\nd\te\x00\x7f'
    written = toml_value(text)
    assert "\n" not in written and tomllib.loads(f"v = {written}")["v"] == text
    assert toml_value(True) == "true" and toml_value(60.0) == "60" and toml_value(0.5) == "0.5"
    assert toml_value(("right", "left")) == '["right", "left"]'


def test_the_page_and_the_default_file_share_the_one_writer(tmp_path: Path) -> None:
    assert settings.toml_value is config.toml_value
    own = [name for name, v in vars(settings).items()
           if callable(v) and getattr(v, "__module__", "") == settings.__name__]
    assert "set_key" in own and not [name for name in own if "toml" in name.lower()]
    assert parse_config(tomllib.loads(default_config_text())) == config.Config()
    path = tmp_path / "config.toml"
    text, wanted = settings.validate(path, {"session.legs": ["left", "right"],
                                            "history.nudge_at": "07:30",
                                            "session.hold_seconds": 75.0})
    assert 'legs = ["left", "right"]' in text and 'nudge_at = "07:30"' in text
    assert "hold_seconds = 75\n" in text
    assert parse_config(tomllib.loads(text)) == wanted
