"""The page as an app, without a browser (issue 24): the manifest, icons and service worker
as served, the settings said for a person, and the history chart's axis and stopped holds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from device.core.config import Config
from device.core.records import HoldRecord, SessionRecord

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from device.addons.web import charts, settings, shell
from device.addons.web.auth import PairingStore
from device.addons.web.server import WebApp, WebOptions
from tests.web_support import FakeBox

ROOT = Path(__file__).resolve().parent.parent
UTCZ = ZoneInfo("UTC")


def client_for(tmp_path: Path, simulator: bool = False) -> TestClient:
    store = PairingStore(tmp_path / "pairing.json")
    web = WebApp(FakeBox(), WebOptions(config_path=tmp_path / "config.toml", store=store,
                                       simulator=simulator))
    return TestClient(web.app)


def test_manifest_icons_and_worker_are_served_under_the_strict_csp(tmp_path: Path) -> None:
    client = client_for(tmp_path)
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "manifest-src 'self'" in csp and "worker-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert 'rel="manifest" href="/manifest.webmanifest"' in page.text
    m = client.get("/manifest.webmanifest")
    assert m.headers["content-type"].startswith("application/manifest+json")
    data = m.json()
    assert data["display"] == "standalone" and data["start_url"] == "/"
    for icon in data["icons"]:
        r = client.get(icon["src"])
        assert r.status_code == 200 and r.headers["content-type"] == icon["type"]
        if icon["type"] == "image/png":
            w, h = (int(x) for x in icon["sizes"].split("x"))
            assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert (int.from_bytes(r.content[16:20], "big"),
                    int.from_bytes(r.content[20:24], "big")) == (w, h)


def test_service_worker_caches_only_the_shell(tmp_path: Path) -> None:
    client = client_for(tmp_path)
    r = client.get("/sw.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    text = r.text
    listed = json.loads(re.search(r"const SHELL = (\[.*?\]);", text).group(1))  # type: ignore[union-attr]
    assert listed == list(shell.SHELL)
    assert not [p for p in listed if p.startswith("/api") or "pair" in p or ":" in p]
    assert "__VERSION__" not in text and "__SHELL__" not in text
    for path in listed:  # every shell path is there to cache
        assert client.get(path).status_code == 200, path
    # the worker answers only for those exact paths, from this origin, GET, no query
    assert "SHELL.includes(url.pathname)" in text and 'url.search === ""' in text
    assert "url.origin === self.location.origin" in text


def test_the_worker_cache_name_changes_with_the_page() -> None:
    a = shell.service_worker()
    assert re.search(rb'const CACHE = "shell-[0-9a-f]{12}"', a)


def test_committed_icons_are_the_ones_the_script_draws() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_icons.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_pairing_screen_names_the_command_for_this_box(tmp_path: Path) -> None:
    assert client_for(tmp_path).get("/api/session").json()["code_command"] == \
        "stretch-companion web-code"
    assert client_for(tmp_path, simulator=True).get("/api/session").json()["code_command"] \
        == "stretch-companion web-code --sim"


# ---- settings for a person --------------------------------------------------------------


@pytest.mark.parametrize("key,value,said", [
    ("session.hold_seconds", 30, "Hold length: choose from 60 to 300 s."),
    ("session.rounds", 11, "Rounds: choose a whole number from 1 to 10."),
    ("voice.volume", 2, "Volume: choose from 0 to 1."),
    ("breath.exhale", 25, "Breathe out: choose from 1 to 20 s."),
    ("history.nudge_at", "25:00",
     "Nudge after: enter a time of day such as 19:30, or leave it empty for no nudge."),
])
def test_a_refused_setting_is_said_for_a_person(tmp_path: Path, key: str, value: object,
                                                said: str) -> None:
    with pytest.raises(settings.SettingsError) as refused:
        settings.save(tmp_path / "config.toml", {key: value})
    assert refused.value.human == said
    assert refused.value.message.startswith(f"{key} = ")  # the config's own words kept
    assert " = " not in said


def test_fields_come_grouped_with_a_control_each() -> None:
    fields = settings.describe(Config())
    assert [g for g in dict.fromkeys(f["group"] for f in fields)] == list(settings.GROUPS)
    controls = {f["key"]: f["control"] for f in fields}
    assert controls["session.hold_seconds"] == "stepper"
    assert controls["breath.inhale"] == "slider"
    assert controls["voice.enabled"] == "toggle"
    assert controls["history.nudge_at"] == "time"
    assert controls["session.legs"] == "choice"
    for f in fields:
        assert f["help"] and f["help"].endswith(".")
        if f["control"] in ("stepper", "slider"):
            assert f["min"] <= f["value"] <= f["max"] and f["step"] > 0
            span = (f["max"] - f["min"]) / f["step"]
            assert abs(span - round(span)) < 1e-9, f["key"]  # the ends are on the steps


# ---- the chart ------------------------------------------------------------------------


def _sessions(days: int, now: datetime, stopped_every: int = 0) -> list[SessionRecord]:
    out = []
    for d in range(days):
        start = now - timedelta(days=d, hours=1)
        if stopped_every and d % stopped_every == stopped_every - 1:
            holds = (HoldRecord("right", 1, 60, 8, "cancelled"),)
            out.append(SessionRecord(start, start + timedelta(minutes=1), "cancelled",
                                     "hamstring", holds))
            continue
        holds = (HoldRecord("right", 1, 60, 60, "complete"),
                 HoldRecord("left", 1, 60, 60, "complete"))
        out.append(SessionRecord(start, start + timedelta(minutes=5), "complete",
                                 "hamstring", holds))
    return sorted(out, key=lambda s: s.started)


def _dots(svg: str, leg: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in
            re.findall(rf'<circle class="dot {leg}" cx="([\d.]+)" cy="([\d.]+)" r="3"', svg)]


def test_chart_axis_fits_ten_days_of_data() -> None:
    now = datetime(2026, 12, 4, 18, tzinfo=UTC)
    svg = charts.hold_chart(_sessions(10, now), now, UTCZ, weeks=12)
    xs = sorted(x for x, _ in _dots(svg, "right"))
    plot = charts.W - charts.PAD_L - charts.PAD_R
    assert len(xs) == 10
    assert xs[-1] - xs[0] > 0.8 * plot  # spread over the axis, not in its right edge
    labels = re.findall(r'<text class="axis" x="[\d.]+" y="\d+" text-anchor="middle">([^<]+)<',
                        svg)
    assert 3 <= len(labels) <= 7 and "04 Dec" in labels and "last 10 days" in svg


def test_chart_axis_keeps_at_least_a_week_and_at_most_the_weeks_shown() -> None:
    now = datetime(2026, 12, 4, 18, tzinfo=UTC)
    one = charts.hold_chart(_sessions(1, now), now, UTCZ, weeks=12)
    assert "last 7 days" in one
    many = charts.hold_chart(_sessions(200, now), now, UTCZ, weeks=12)
    assert "last 84 days" in many


def test_stopped_holds_are_marks_not_hold_lengths() -> None:
    now = datetime(2026, 12, 4, 18, tzinfo=UTC)
    svg = charts.hold_chart(_sessions(12, now, stopped_every=3), now, UTCZ)
    dots = _dots(svg, "right")
    assert len(dots) == 8 and len({y for _, y in dots}) == 1  # all 60 s: the 8 s ones left out
    marks = re.findall(r'<path class="mark right"[^>]*><title>([^<]+)</title>', svg)
    assert len(marks) == 4 and all("stopped after 8 s" in m for m in marks)
    assert "stopped early" in svg and "4 stopped early" in svg


# ---- the simulator's own settings -----------------------------------------------------


def test_simulator_page_writes_the_sims_own_settings_never_the_real_config(
        tmp_path: Path) -> None:
    """The simulator runs from the user's config but its page saves to sim-config.toml,
    starting from that config's text; the real file is not touched."""
    import os

    from device.addons.web import attach
    from device.apps.cli import _config_file
    from device.apps.cli import _parser as build_parser

    real_dir = Path(os.environ["XDG_CONFIG_HOME"]) / "stretch-companion"
    real_dir.mkdir(parents=True)
    real = real_dir / "config.toml"
    real.write_text("# mine\n[session]\nhold_seconds = 90\n\n[voice]\nrate = 150\n")
    before = real.read_bytes()
    args = build_parser().parse_args(["sim"])
    own = _config_file(args)
    assert own == real_dir / "sim-config.toml"
    box = FakeBox(settings.current(real))
    handle = attach(box, "127.0.0.1:0", config_path=own, simulator=True,
                    state_dir=tmp_path / "state")
    try:
        client = TestClient(handle.server.web.app)
        headers = {"origin": "http://testserver"}
        r = client.post("/api/pair", json={"code": handle.code}, headers=headers)
        csrf = r.json()["csrf"]
        shown = {f["key"]: f["value"] for f in client.get("/api/settings").json()["fields"]}
        assert shown["session.hold_seconds"] == 90  # what the simulator runs
        r = client.post("/api/settings", json={"changes": {"session.hold_seconds": 120}},
                        headers={**headers, "x-csrf-token": csrf})
        assert r.status_code == 200, r.text
    finally:
        handle.close()
    assert real.read_bytes() == before
    saved = own.read_text()
    assert "hold_seconds = 120" in saved and "rate = 150" in saved and "# mine" in saved
    assert box.commands.reloaded[-1].voice.rate == 150  # the rest of what it ran, kept
    # the next simulator start runs from its own file; the box still from the real one
    from device.apps.cli import _sim_config
    from device.core.config import config_source

    assert _sim_config(args) == own and config_source(None) == real



def test_the_page_is_told_of_a_box_id_clash(tmp_path: Path) -> None:
    """The MQTT add-on's clash notice reaches the page's view (shown above the button)."""
    box = FakeBox()
    store = PairingStore(tmp_path / "pairing.json")
    client = TestClient(WebApp(box, WebOptions(config_path=tmp_path / "c.toml",
                                               store=store)).app)
    client.post("/api/pair", json={"code": store.code}, headers={"origin": "http://testserver"})
    assert "box_clash" not in client.get("/api/state").json()
    real = box.view  # the MQTT add-on sets the view's box_clash (box.update_view)
    box.view = lambda: {**real().to_json(),  # type: ignore[method-assign]
                        "box_clash": "another box uses box_id 'raspberrypi' on this broker"}
    assert "raspberrypi" in client.get("/api/state").json()["box_clash"]
    page = client.get("/static/app.js").text
    assert "box_clash" in page and 'id="clash"' in client.get("/").text
