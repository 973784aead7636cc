"""The page on the real (simulated) box: settings between sessions, the CLI lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.apps.builder import build_box
from device.apps.cli import main
from device.box.clock import VirtualClock
from device.core.config import Config, with_overrides
from tests.tools import need


def _box(history: Path | None = None):
    config = with_overrides(Config(), session={"setup_pause_seconds": 0, "hold_seconds": 60})
    return build_box(config, mode="sim", clock=VirtualClock(), history=history)


def test_saved_settings_wait_for_the_session_to_end_then_apply(tmp_path: Path) -> None:
    box = _box(tmp_path / "h.db")
    loop = box.loop
    try:
        new = with_overrides(box.config, session={"hold_seconds": 150, "legs": ["left"],
                                                  "rounds": 2, "long_press_seconds": 1.0},
                             breath={"inhale": 5})
        loop.schedule(1, box.commands.press)
        loop.schedule(2, box.commands.press)
        loop.schedule(2.3, box.commands.press)  # a double press: straight to the hold
        loop.run(until=60)
        assert box.view().state == "hold" and box.view().hold_planned_s == 60
        box.port.reload(new)
        loop.run(until=62)
        assert box.config is not new  # the session goes on
        assert box.view().hold_planned_s == 60 and loop.config.breath.inhale == 4
        loop.schedule(63, box.commands.long_press)  # cancel: back to idle soon after
        loop.run(until=80)
        assert box.view().state == "idle"
        assert box.config is new
        assert loop.config is new and box.config is new and box.habit.config is new
        loop.schedule(81, box.commands.press)  # the next session uses it
        loop.run(until=200)
        view = box.view()
        assert (view.state, view.leg, view.rounds, view.hold_planned_s) == (
            "hold", "left", 2, 150)
    finally:
        box.close()


def test_saved_settings_apply_at_once_when_idle() -> None:
    box = _box()
    try:
        new = with_overrides(box.config, session={"hold_seconds": 90})
        box.port.reload(new)
        box.loop.run(until=1)
        assert box.config is new
        box.loop.schedule(2, box.commands.press)
        box.loop.run(until=120)
        assert box.view().hold_planned_s == 90
    finally:
        box.close()


def test_the_read_model_shows_the_strap_band_ceiling_and_next_hold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's Now view reads these: the strap's band and ceiling (set by the strap
    add-on through the loop's API), and the next hold while idle; a saved ceiling reaches
    the strap between sessions."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))  # no saved calibration: rel units
    config = with_overrides(Config(), session={"setup_pause_seconds": 0, "hold_seconds": 75},
                            sensor={"overpull_max_kg": 20, "overpull_max_rel": 12,
                                    "loaded_kg": 1.5})
    box = build_box(config, mode="sim", clock=VirtualClock(), sensor=True)
    loop = box.loop
    try:
        loop.run(until=0.5)
        view = box.view()
        assert view.tension_units == "rel" and view.state == "idle"
        assert (view.tension_low, view.tension_high, view.tension_ceiling) == (1.5, None, 12)
        assert view.next_hold_s == 75
        assert view.to_json()["tension_ceiling"] == 12
        loop.schedule(1, box.commands.press)
        loop.schedule(4, box.commands.press)
        loop.schedule(4.3, box.commands.press)  # a double press: into the hold
        box.strap.legs.clear()  # a strap that does not relax: the band's arithmetic exactly
        loop.schedule(5, lambda: box.strap.set_level(5.0))
        loop.run(until=25)
        view = box.view()
        assert view.state == "hold" and view.next_hold_s is None
        # the over-pull line from this hold's own level: max(1.5 x 5, 5 + 2) = 7.5
        assert view.tension_high == pytest.approx(7.5, abs=0.3)
        assert view.tension_low == 1.5 and view.tension_ceiling == 12
        new = with_overrides(box.config, sensor={"overpull_max_rel": 6})
        box.port.reload(new)
        loop.run(until=26)
        assert box.view().tension_ceiling == 12  # the hold in progress keeps its ceiling
        assert box.sensor.coach.thresholds.overpull_max == 12
        loop.schedule(27, box.commands.long_press)
        loop.run(until=40)
        assert box.config is new
        view = box.view()
        assert view.state == "idle" and view.tension_ceiling == 6
        assert box.sensor.thresholds.overpull_max == 6  # the next hold's coach uses it
    finally:
        box.close()


def test_sim_web_prints_the_pairing_line(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    assert main(["sim", "--headless", "--quiet", "--no-history", "--config", str(cfg),
                 "--speed", "50", "--until", "2", "--web", "127.0.0.1:0"]) == 0
    err = capsys.readouterr().err
    code = json.loads((tmp_path / "sim-web-pairing.json").read_text())["code"]
    assert f"pair with code {code} at http://127.0.0.1:" in err
    assert err.count(code) == 1  # once, not also as a log line
    capsys.readouterr()
    assert main(["web-code", "--sim"]) == 0
    assert capsys.readouterr().out.strip() == code
    assert main(["web-forget", "--sim"]) == 0
    assert capsys.readouterr().out.startswith("forgot 0 paired phones; new code ")


def test_sim_web_bad_address_and_virtual_time_are_usage_errors(capsys) -> None:
    assert main(["sim", "--headless", "--web", "nowhere"]) == 2
    assert "--web 'nowhere': must be HOST:PORT" in capsys.readouterr().err
    assert main(["sim", "--headless", "--web", "127.0.0.1:0"]) == 2
    assert "--web needs real time" in capsys.readouterr().err


def test_web_enabled_in_the_config_serves_the_page(tmp_path: Path, monkeypatch) -> None:
    import socket

    import httpx

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    with socket.socket() as s:  # a free port (0 is not a valid config value)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = with_overrides(Config(), web={"enabled": True, "listen": f"127.0.0.1:{port}"})
    box = build_box(config, mode="sim", clock=VirtualClock(), config_path=tmp_path / "c.toml")
    try:
        from device.addons.web import WebHandle

        handle = next(a for a in box.addons if isinstance(a, WebHandle))
        assert httpx.get(handle.url + "api/state").status_code == 401
    finally:
        box.close()
    assert not handle.server.thread.is_alive()


def test_the_systemd_drop_in_opens_only_the_page_port(tmp_path: Path) -> None:
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    text = (root / "systemd" / "web.conf").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert "SocketBindAllow=tcp:@PORT@" in lines and "SocketBindDeny=any" in lines
    assert "IPAddressDeny=any" in lines and "PrivateNetwork=no" in lines
    analyze = shutil.which("systemd-analyze")
    need(analyze is not None, "systemd-analyze", "apt-get install systemd")
    assert analyze is not None
    unit = (root / "systemd" / "stretch-companion.service").read_text()
    unit = "\n".join("ExecStart=/bin/true" if ln.startswith("ExecStart=") else ln
                     for ln in unit.splitlines()) + "\n"
    (tmp_path / "stretch-companion.service").write_text(unit)
    (tmp_path / "stretch-companion.service.d").mkdir()
    (tmp_path / "stretch-companion.service.d" / "web.conf").write_text(
        text.replace("@PORT@", "8321"))
    env = {"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "SYSTEMD_COLORS": "0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([analyze, "verify", str(tmp_path / "stretch-companion.service")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    done = subprocess.run([analyze, "security", "--offline=yes",
                           str(tmp_path / "stretch-companion.service")],
                          capture_output=True, text=True, env=env, timeout=120)
    exposure = float(done.stdout.rsplit("exposure level", 1)[1].split(":")[1].split()[0])
    assert exposure <= 2.0  # the drop-in opens the network, and only that


def test_settings_path_skips_a_location_it_may_not_look_into(tmp_path, monkeypatch) -> None:
    """Under systemd's ProtectHome= the user's config folder cannot even be looked at: the
    page's config file is then the next location, and ``run`` starts (no traceback)."""
    from pathlib import Path

    from device.addons.web import settings

    hidden = tmp_path / "hidden" / "config.toml"
    etc = tmp_path / "etc" / "config.toml"
    real_is_file = Path.is_file

    def is_file(self: Path) -> bool:
        if self == hidden:
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    monkeypatch.setattr("device.core.config.config_paths", lambda: [hidden, etc])
    monkeypatch.setattr(settings, "config_paths", lambda: [hidden, etc])
    assert settings.settings_path(None, service=True) == etc
    etc.parent.mkdir()
    etc.write_text("")
    assert settings.settings_path(None) == etc


def test_a_press_on_the_idle_box_says_the_code_a_page_asked_for(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Issue 22: a page's request says nothing by itself; the owner's press on the box
    says a fresh code instead of starting a session; the control socket's ``pair`` too."""
    import socket

    import httpx

    from device.addons.control import ControlServer, _say_pairing
    from device.addons.web import WebHandle

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = with_overrides(Config(), web={"enabled": True, "listen": f"127.0.0.1:{port}"})
    box = build_box(config, mode="sim", clock=VirtualClock(), config_path=tmp_path / "c.toml")
    try:
        handle = next(a for a in box.addons if isinstance(a, WebHandle))
        r = httpx.post(handle.url + "api/pair/announce", json={})
        assert r.json() == {"said": False, "press": True}
        box.loop.run(until=2)
        assert not [t for t in box.speaker.spoken if "pair your phone" in t]
        box.loop.schedule(3, box.commands.press)
        box.loop.run(until=10)
        said = [t for t in box.speaker.spoken if "pair your phone" in t]
        assert len(said) == 1 and box.view().state == "idle"  # no session started
        assert "".join(c for c in said[0] if c.isdigit()) == handle.code
        box.loop.schedule(11, box.commands.press)  # the next press starts a session
        box.loop.run(until=13)
        assert box.view().state == "setup"
        old = handle.code
        _say_pairing(box.port)  # the control socket's "pair"
        assert handle.code != old
        server = ControlServer(tmp_path / "c.sock", lambda: None, lambda: None, dict,
                               pair=lambda: None)
        assert server.answer(b"pair") == "ok"
    finally:
        box.close()
