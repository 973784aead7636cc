"""Bad input of every kind ends in one clear line and the documented exit code, at start-up,
never a traceback: exit 78 for a bad config or routine, 2 for a bad command-line option,
script item or --events stream that cannot be written at all, 1 for a stream that failed
part-way (the session itself still runs).

The property-based tests (Hypothesis) cover whole classes: config values, script items and
command-line arguments. They call ``device.apps.cli.main`` in-process, so they run in seconds.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from device.apps.cli import main
from device.box.clock import RealClock
from device.core.config import Config
from tests.tools import need

PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
CODES = {0: "ok", 1: "failed", 2: "usage", 78: "config"}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``main(argv)``: (exit code, stdout, stderr); argparse's own exit counts too."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage line + exit 2
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(code: int, err: str, allowed: set[int]) -> None:
    assert code in allowed, (code, err)
    assert "Traceback" not in err, err
    if code in (1, 78) or (code == 2 and "usage:" not in err):
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("stretch-companion: "), err


# ---- one case each, from the report --------------------------------------------------------


def test_a_time_zone_that_names_a_folder_is_a_config_error(tmp_path, capsys) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[history]\ntimezone = "Europe"\n')
    code, _, err = run(["config", "--check", str(path)], capsys)
    assert code == 78 and "history.timezone = 'Europe'" in err and "Europe/Berlin" in err
    assert_one_clear_line(code, err, {78})


def test_tz_naming_a_folder_falls_back_to_the_system_zone(tmp_path, capsys, monkeypatch) -> None:
    from device.core.streaks import local_zone

    monkeypatch.setenv("TZ", "America")
    assert local_zone() is not None
    code, out, err = run(["history", "--history", str(tmp_path / "h.db")], capsys)
    assert code == 0 and "No sessions recorded yet" in out and "Traceback" not in err


@pytest.mark.parametrize("value", ["1²:30", "١٩:٣٠", "7:5", "24:00", "19:3०"])
def test_a_nudge_time_takes_ascii_digits_only(tmp_path, capsys, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[history]\nnudge_at = "{value}"\n', encoding="utf-8")
    code, _, err = run(["config", "--check", str(path)], capsys)
    assert code == 78 and "history.nudge_at" in err and "HH:MM" in err
    assert_one_clear_line(code, err, {78})


@pytest.mark.parametrize("item", ["press@1e10", "press@1e300", "long@604801", "press@inf"])
def test_absurd_script_times_are_refused_at_start(capsys, item: str) -> None:
    code, out, err = run(["sim", "--headless", "--no-history", "--speed", "1",
                          "--script", item], capsys)
    assert code == 2 and "from 0 to 604800 (a week)" in err and out == ""
    assert_one_clear_line(code, err, {2})


def test_the_real_clock_never_overflows_the_platform_wait() -> None:
    wake = threading.Event()
    timer = threading.Timer(0.05, wake.set)
    timer.start()
    try:
        assert RealClock(speed=0.5).wait(wake, 1e300) is True  # woken, not OverflowError
    finally:
        timer.cancel()


@pytest.mark.parametrize("start", ["9999-12-31T23:59:00+00:00", "0001-01-01T00:00:00",
                                   "0001-01-01T00:00:00+05:00", "1970-01-01T00:00:00-05:00"])
def test_a_start_at_the_end_of_the_calendar_is_refused_at_start(tmp_path, capsys,
                                                                start: str) -> None:
    db = tmp_path / "h.db"
    code, _, err = run(["sim", "--headless", "--quiet", "--history", str(db),
                        "--start", start], capsys)
    assert code == 2 and "must be a time in the years 1971 to 9998" in err
    assert not db.exists()  # refused before anything ran
    assert_one_clear_line(code, err, {2})


def test_a_start_late_in_the_calendar_is_recorded(tmp_path, capsys) -> None:
    db = tmp_path / "h.db"
    code, _, err = run(["sim", "--headless", "--quiet", "--history", str(db),
                        "--start", "9998-12-31T23:59:00+00:00"], capsys)
    assert code == 0, err
    from device.store.sqlite import History

    with History(db, read_only=True) as h:
        assert [s.outcome for s in h.sessions()] == ["complete"]


def test_events_to_a_full_device_stop_at_start(tmp_path, capsys) -> None:
    need(os.path.exists("/dev/full"), "/dev/full", "a Linux machine")
    db = tmp_path / "h.db"
    code, out, err = run(["sim", "--headless", "--quiet", "--history", str(db),
                          "--events", "/dev/full"], capsys)
    assert code == 2 and "--events /dev/full: cannot write it (No space left on device)" in err
    assert_one_clear_line(code, err, {2})


def test_events_to_a_closed_stdout_stop_at_start(capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdout", None)  # as Python sets it when started with >&-
    code, _, err = run(["sim", "--headless", "--no-history", "--events", "-"], capsys)
    assert code == 2 and "standard output is closed" in err
    assert_one_clear_line(code, err, {2})


@pytest.mark.parametrize("argv", [["selftest", "--mock"], ["config"], ["config", "--default"]])
def test_other_commands_with_a_closed_stdout_just_run(capsys, monkeypatch, argv) -> None:
    monkeypatch.setattr(sys, "stdout", None)
    code, _, err = run(argv, capsys)
    assert code == 0 and err == ""


def test_a_stream_that_fails_mid_run_is_reported_once_and_the_session_goes_on(
        tmp_path, capsys, monkeypatch) -> None:
    """The disk fills up during a run: the session still completes and is recorded; the
    command says in one line that the events stopped, and exits 1."""

    class FillsUp:
        def __init__(self) -> None:
            self.written = 0
            self.closed = False

        def write(self, text: str) -> int:
            if self.written > 2000:
                raise OSError(28, "No space left on device")
            self.written += len(text)
            return len(text)

        def flush(self) -> None:
            if self.written > 2000:
                raise OSError(28, "No space left on device")

        def close(self) -> None:
            self.flush()

    stream = FillsUp()
    import builtins

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **kw: stream
                        if str(path) == "full.jsonl" else real_open(path, *a, **kw))
    db = tmp_path / "h.db"
    code, _, err = run(["sim", "--headless", "--quiet", "--history", str(db),
                        "--events", "full.jsonl"], capsys)
    assert code == 1
    assert "--events full.jsonl: could not write it (No space left on device)" in err
    assert_one_clear_line(code, err, {1})
    from device.store.sqlite import History

    with History(db, read_only=True) as h:
        assert [s.outcome for s in h.sessions()] == ["complete"]


@pytest.mark.parametrize("kind", ["folder", "fifo", "zero", "deep", "huge-int", "big",
                                  "latin-1"])
def test_special_config_files_are_one_line(tmp_path, capsys, kind: str) -> None:
    path = tmp_path / "c.toml"
    expect = {"folder": "is a folder", "fifo": "is a FIFO", "zero": "is a device",
              "deep": "nested too deeply", "huge-int": "not valid TOML",
              "big": "bytes; must be a TOML file of at most", "latin-1": "not UTF-8"}[kind]
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer forever
    elif kind == "zero":
        path = Path("/dev/zero")  # reading it would never end
    elif kind == "deep":
        path.write_text("a = " + "[" * 5000 + "]" * 5000)
    elif kind == "huge-int":
        path.write_text("[session]\nrounds = 1" + "0" * 5000 + "\n")
    elif kind == "big":
        path.write_text("# padding\n" * 200_000)
    else:
        path.write_bytes('[voice]\nvoice = "caf\xe9"\n'.encode("latin-1"))
    started = time.monotonic()
    code, _, err = run(["config", "--check", str(path)], capsys)
    assert time.monotonic() - started < 5
    assert code == 78 and expect in err, err
    assert_one_clear_line(code, err, {78})


def test_a_routine_file_that_is_a_fifo_is_one_line(tmp_path, capsys) -> None:
    fifo = tmp_path / "routine.toml"
    os.mkfifo(fifo)
    path = tmp_path / "c.toml"
    path.write_text(f'[routine]\nfile = "{fifo}"\n')
    code, _, err = run(["sim", "--headless", "--quiet", "--no-history", "--config", str(path)],
                       capsys)
    assert code == 78 and "routine.file" in err and "is a FIFO" in err
    assert_one_clear_line(code, err, {78})


@pytest.mark.parametrize("argv", [["config", "--check", "caf\udce9.toml"],
                                  ["history", "--history", "\udcff.db"],
                                  ["sim", "--headless", "--script", "press@\udcff"]])
def test_bytes_that_are_not_utf8_on_the_command_line_are_one_line(capsys, argv) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2 and "is not UTF-8 text" in err and out == ""
    assert_one_clear_line(code, err, {2})


@pytest.mark.parametrize("option", ["--history", "--events"])
def test_a_folder_or_fifo_as_a_sim_file_is_one_line(tmp_path, capsys, option: str) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    for target in (tmp_path, fifo):
        if option == "--events" and target == fifo:
            continue  # opening a FIFO to write waits for a reader, as any program's would
        code, _, err = run(["sim", "--headless", "--quiet", option, str(target)], capsys)
        assert code == 2, err
        assert_one_clear_line(code, err, {2})


# ---- properties over whole classes of input -------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
               max_size=30)
DIGITS = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4)
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    DIGITS,
    st.sampled_from(["1e300", "1e10", "-0", "0x10", "1_000", "٣", "²", "⑤", "1e-400", "", " 5"]),
    TEXT,
)


def toml_value(draw_value: object) -> str:
    """A TOML literal for a Python value (strings escaped as TOML basic strings)."""
    v = draw_value
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    DIGITS,
    st.sampled_from(["Europe", "America", "Etc", "Europe/Berlin", "UTC", "../etc", "/etc/x",
                     "19:30", "1²:30", "١٩:٣٠", "aplay -q", "'unclosed", "mock", "glow",
                     "right", "left", "strap", "steady"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["a", "b"]), inner,
                                                 max_size=2)), max_leaves=6)


def config_keys() -> list[tuple[str, str]]:
    """(section, key) for every setting, plus a few that do not exist."""
    from dataclasses import fields

    keys = [(s.name, f.name) for s in fields(Config) for f in fields(getattr(Config(), s.name))]
    return keys + [("session", "hold_secs"), ("nosuch", "key")]


@PROPERTY
@given(picks=st.lists(st.tuples(st.sampled_from(config_keys()), VALUES), min_size=1,
                      max_size=3, unique_by=lambda p: p[0]))
@example(picks=[(("history", "timezone"), "Europe")])
@example(picks=[(("history", "nudge_at"), "1²:30")])
@example(picks=[(("session", "legs"), [[[[["right"]]]]])])
def test_any_config_value_is_accepted_or_one_line_78(tmp_path_factory, capsys, picks) -> None:
    sections: dict[str, list[str]] = {}
    for (section, key), value in picks:
        sections.setdefault(section, []).append(f"{key} = {toml_value(value)}")
    text = "".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in sections.items())
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run(["config", "--check", str(path)], capsys)
    assert_one_clear_line(code, err, {0, 78})
    if code == 78:
        assert any(key in err for (_, key), _ in picks) or "not valid TOML" in err \
            or "breaths per minute" in err or "light.low" in err or "pins." in err, err
    else:
        assert out.strip().endswith(": ok")


@PROPERTY
@given(text=st.text(max_size=200).filter(lambda t: "\x00" not in t))
def test_any_config_text_is_accepted_or_one_line_78(tmp_path_factory, capsys, text) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    try:
        path.write_text(text, encoding="utf-8")
    except UnicodeEncodeError:
        assume(False)
    code, _, err = run(["config", "--check", str(path)], capsys)
    assert_one_clear_line(code, err, {0, 78})


SCRIPT_ITEM = st.builds(
    lambda name, at, arg: f"{name}@{at}" + (f":{arg}" if arg is not None else ""),
    st.sampled_from(["press", "long", "tension", "bounce", "unplug", "replug", "jump", ""]),
    NUMBER_TEXT.filter(lambda t: "," not in t),
    st.none() | NUMBER_TEXT.filter(lambda t: "," not in t),
)


@PROPERTY
@given(items=st.lists(SCRIPT_ITEM | TEXT.filter(lambda t: "," not in t), max_size=4),
       sensor=st.booleans())
@example(items=["press@1e300"], sensor=False)
@example(items=["tension@1:1e400"], sensor=True)
@example(items=["press@٣"], sensor=False)
def test_any_script_runs_or_is_one_line_2(capsys, items, sensor) -> None:
    argv = ["sim", "--headless", "--quiet", "--no-history", "--until", "5",
            "--script", ",".join(items)]
    code, _, err = run(argv + (["--sensor"] if sensor else []), capsys)
    assert_one_clear_line(code, err, {0, 2})


SIM_OPTIONS = {
    "--until": NUMBER_TEXT,
    "--speed": NUMBER_TEXT,
    "--start": st.one_of(TEXT, st.datetimes(timezones=st.timezones() | st.none()).map(
        lambda d: d.isoformat()), st.sampled_from(["9999-12-31T23:59:59", "0001-01-01",
                                                   "2026-11-26T07:30:00+01:00"])),
    "--events": st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8),
    "--history": st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8),
    "--config": TEXT.filter(lambda t: t and not t.startswith("-")),
}


@PROPERTY
@given(option=st.sampled_from(sorted(SIM_OPTIONS)), data=st.data())
def test_any_sim_option_value_runs_or_is_one_line(tmp_path_factory, capsys, monkeypatch,
                                                  option, data) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("run"))  # files it writes stay here
    value = data.draw(SIM_OPTIONS[option])
    assume(not value.startswith("-") or option in ("--until", "--speed"))
    argv = ["sim", "--headless", "--quiet", f"{option}={value}"]
    if option == "--speed":
        argv += ["--until", "0.05", "--no-history"]  # at 0.1x: half a real second at most
    elif option != "--until":
        argv += ["--until", "5"]
    if option != "--history":
        argv.append("--no-history")
    code, _, err = run(argv, capsys)
    assert_one_clear_line(code, err, {0, 2, 78})


OTHER_COMMANDS = st.one_of(
    st.tuples(st.just("history"), st.sampled_from(["--limit", "--weeks"]), NUMBER_TEXT),
    st.tuples(st.just("history"), st.sampled_from(["--csv", "--history"]),
              st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=8)),
    st.tuples(st.just("config"), st.sampled_from(["--check", "--config"]),
              TEXT.filter(lambda t: t and not t.startswith("-"))),
    st.tuples(st.just("calibrate"), st.just("--kg"),
              NUMBER_TEXT.filter(lambda t: _not_a_weight(t))),
)


def _not_a_weight(text: str) -> bool:
    """True unless ``text`` is a weight calibrate would go on with (it would then ask for
    the weight on stdin)."""
    try:
        kg = float(text)
    except ValueError:
        return True
    return not 1 <= kg <= 200


@PROPERTY
@given(command=OTHER_COMMANDS)
@example(command=("calibrate", "--kg", "0"))
@example(command=("history", "--limit", "٣"))
def test_any_other_command_argument_is_fine_or_one_line(tmp_path_factory, capsys, monkeypatch,
                                                        command) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("cmd"))
    name, option, value = command
    argv = [name, f"{option}={value}"] + (["--mock"] if name == "calibrate" else [])
    code, _, err = run(argv, capsys)
    assert_one_clear_line(code, err, {0, 1, 2, 78})


def test_the_config_text_round_trips_every_key(tmp_path) -> None:
    """``config_text`` (behind ``config`` and ``config --default``) is valid TOML."""
    import tomllib

    from device.core.config import config_text, parse_config

    assert parse_config(tomllib.loads(config_text(Config(), []))) == Config()


# ---- issue 22: everything from the network is data ---------------------------------------

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=20))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


def _deep(n: int, open_: bytes = b"[") -> bytes:
    close = b"]" if open_ == b"[" else b"}"
    inner = b'{"a":' if open_ == b"{" else open_
    return inner * n + b"1" + close * n


NETWORK_BYTES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUE.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 120_000).map(_deep),
    st.integers(1, 20_000).map(lambda n: _deep(n, b"{")),
    st.sampled_from([b"NaN", b"[Infinity]", b'{"streak_days": -5}', b"\xff\xfe",
                     b'{"started": "9999-01-01T00:00:00+00:00"}', b"", b"start",
                     b'{"command": "press", "at": 1e308}', b" " * 70_000]),
)


@PROPERTY
@given(payload=NETWORK_BYTES, name=st.sampled_from(["session", "stats", "availability"]))
@example(payload=_deep(100_000), name="session")
@example(payload=b"[]", name="stats")
def test_any_studio_message_is_stored_or_set_aside(tmp_path_factory, payload: bytes,
                                                   name: str) -> None:
    """The studio's handler on any payload: stored or quarantined, always acknowledged,
    never raising (the paho thread would die and the message come back for ever)."""
    from device.apps.studio import Studio, StudioStore

    class Msg:
        topic = f"stretch-companion/box1/{name}"
        qos, mid, retain = 1, 7, False

    Msg.payload = payload
    acks: list[int] = []

    class Client:
        def ack(self, mid: int, qos: int) -> None:
            acks.append(mid)

    store = StudioStore(tmp_path_factory.mktemp("studio") / "s.db")
    studio = Studio.__new__(Studio)  # the handler alone: no broker needed
    studio.store, studio.on_change, studio.last_message = store, None, 0.0
    studio.new_sessions = studio.duplicates = studio.refused = 0
    studio._bad_logged = set()
    studio._on_message(Client(), None, Msg())
    assert acks == [7]
    assert studio.refused + studio.new_sessions + studio.duplicates <= 1
    store.summary()  # whatever was stored, the table can be drawn
    store.close()


@PROPERTY
@given(payload=NETWORK_BYTES)
@example(payload=b"[" * 5000)
def test_any_command_payload_is_a_command_or_a_value_error(payload: bytes) -> None:
    from device.addons.mqtt import parse_command

    try:
        parse_command(payload, time.time())
    except ValueError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300


@PROPERTY
@given(line=st.binary(max_size=600), end=st.sampled_from([b"\n", b"", b"\r\n"]))
@example(line=b"status", end=b"")
@example(line=b"\xff" * 500, end=b"\n")
def test_any_control_request_gets_one_line(tmp_path_factory, line: bytes, end: bytes) -> None:
    import socket as socket_mod

    from device.addons.control import ControlServer

    path = tmp_path_factory.mktemp("ctl") / "c.sock"
    with ControlServer(path, lambda: None, lambda: None, lambda: {"state": "idle"}) as server:
        with socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(server.path)
            s.sendall(line + end)
            s.shutdown(socket_mod.SHUT_WR)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
    if line.strip(b"\r\n \t") or b"\n" in line:
        assert answer.endswith(b"\n") and answer, (line, answer)
    for reply in answer.splitlines():
        assert reply in (b"ok",) or reply.startswith((b"{", b"error: ")), reply


@PROPERTY
@given(body=NETWORK_BYTES, path=st.sampled_from(["/api/pair", "/api/settings",
                                                  "/api/pair/announce", "/api/press"]))
@example(body=_deep(2000), path="/api/pair")
@example(body=_deep(2000), path="/api/settings")
def test_any_page_body_gets_an_answer_with_the_security_headers(tmp_path_factory, body: bytes,
                                                                path: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from device.addons.web.auth import PairingStore, csrf_for
    from device.addons.web.server import COOKIE, WebApp, WebOptions
    from tests.web_support import FakeBox

    folder = tmp_path_factory.mktemp("web")
    store = PairingStore(folder / "p.json")
    web = WebApp(FakeBox(), WebOptions(store=store, config_path=folder / "c.toml"))
    token, _ = store.pair(store.code)
    assert token
    client = TestClient(web.app, raise_server_exceptions=False)
    client.cookies.set(COOKIE, token)
    r = client.post(path, content=body, headers={
        "content-type": "application/json", "x-csrf-token": csrf_for(token),
        "origin": "http://testserver"})
    assert r.status_code < 500, (r.status_code, r.text[:200])
    assert "content-security-policy" in r.headers
