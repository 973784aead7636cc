"""The phone page's HTTP API, pairing store and settings editor (no browser)."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
import tomllib
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.core.config import Config, load_config, parse_config
from device.core.errors import ConfigError
from device.core.records import RELAX_FIELDS

with warnings.catch_warnings():  # newer Starlette prefers httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from device.addons.web import parse_listen, web_code_main, web_forget_main
from device.addons.web.auth import LOCK_S, MAX_WRONG, PairingStore, store_path
from device.addons.web.server import COOKIE, MAX_BODY, WebApp, WebOptions
from device.addons.web.settings import BY_KEY, human, set_key
from tests.tools import need
from tests.web_support import FakeBox

ORIGIN = {"origin": "http://testserver"}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> PairingStore:
    return PairingStore(tmp_path / "state" / "web-pairing.json", clock=clock)


CONFIG_TEXT = """# my box
[session]
# a comment that must survive
hold_seconds = 90
legs = [
  "right",
  "left",
]

[voice]
rate = 150
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG_TEXT)
    return path


@pytest.fixture
def box(config_file: Path) -> FakeBox:
    return FakeBox(load_config(config_file))


@pytest.fixture
def web(box: FakeBox, store: PairingStore, clock: Clock, config_file: Path,
        tmp_path: Path) -> WebApp:
    return WebApp(box, WebOptions(config_path=config_file, store=store, clock=clock,
                                  history_path=tmp_path / "history.db",
                                  on_config_saved=box.reload))


@pytest.fixture
def client(web: WebApp) -> TestClient:
    return TestClient(web.app)


def pair(client: TestClient, store: PairingStore) -> str:
    r = client.post("/api/pair", json={"code": store.code}, headers=ORIGIN)
    assert r.status_code == 200, r.text
    return r.json()["csrf"]


# ---- the pairing store -------------------------------------------------------------------


def test_store_code_is_six_digits_and_kept_private(store: PairingStore) -> None:
    assert len(store.code) == 6 and store.code.isdigit()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert PairingStore(store.path).code == store.code  # kept across restarts


def test_store_right_code_pairs_once_and_a_new_code_follows(store: PairingStore) -> None:
    code = store.code
    token, why = store.pair(code)
    assert token and why == ""
    assert store.valid(token) and not store.valid("nope") and not store.valid(None)
    assert store.code != code  # a code pairs one phone
    assert store.pair(code)[0] is None
    assert token not in store.path.read_text()  # only its hash is stored


def test_store_five_wrong_codes_lock_for_a_minute(store: PairingStore, clock: Clock) -> None:
    right = store.code
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for i in range(MAX_WRONG - 1):
        token, why = store.pair(wrong)
        assert token is None and f"{MAX_WRONG - 1 - i} tries left" in why
    token, why = store.pair(wrong)
    assert token is None and why.startswith("locked")
    assert store.code != right  # a lockout draws a new code
    right = store.code
    token, why = store.pair(right)  # even the right code waits out the lock
    assert token is None and "try again in 60 s" in why
    clock.t += LOCK_S - 1
    assert store.pair(right)[0] is None
    clock.t += 1
    assert store.pair(right)[0] is not None


def test_store_forget_revokes_every_phone_even_in_a_running_server(
        store: PairingStore) -> None:
    a, _ = store.pair(store.code)
    b, _ = store.pair(store.code)
    other = PairingStore(store.path)  # the CLI, another process
    time.sleep(0.01)  # a later mtime for the re-read
    assert other.forget() == 2
    assert not store.valid(a) and not store.valid(b)


def test_store_path_sim_keeps_its_own(tmp_path: Path) -> None:
    assert store_path(tmp_path).name == "web-pairing.json"
    assert store_path(tmp_path, simulator=True).name == "sim-web-pairing.json"
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg"), "STATE_DIRECTORY": ""}
    assert store_path(None, env=env).parent == tmp_path / "xdg" / "stretch-companion"


def test_web_code_and_forget_commands(tmp_path: Path) -> None:
    from io import StringIO

    out = StringIO()
    web_code_main(state_dir=tmp_path, out=out)
    code = out.getvalue().strip()
    assert len(code) == 6 and PairingStore(store_path(tmp_path)).code == code
    token, _ = PairingStore(store_path(tmp_path)).pair(code)
    out = StringIO()
    web_forget_main(state_dir=tmp_path, out=out)
    assert out.getvalue().startswith("forgot 1 paired phone;")
    assert not PairingStore(store_path(tmp_path)).valid(token)


# ---- config keys ---------------------------------------------------------------------------


def test_web_config_keys_are_validated_like_the_others() -> None:
    assert Config().web.enabled is False and Config().web.listen == "0.0.0.0:8321"
    assert parse_config({"web": {"enabled": True, "listen": "127.0.0.1:9000"}}).web.enabled
    with pytest.raises(ConfigError, match=r"^web.listen = 'localhost': must be HOST:PORT"):
        parse_config({"web": {"listen": "localhost"}})
    with pytest.raises(ConfigError, match=r"^web.enabled = 'yes': must be true or false"):
        parse_config({"web": {"enabled": "yes"}})
    assert parse_listen("[::1]:8321") == ("::1", 8321)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen("nowhere")


# ---- headers, pairing over HTTP ----------------------------------------------------------


def test_page_is_served_with_strict_headers_and_no_outside_resources(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    html = r.text
    assert "<script>" not in html and " style=" not in html  # no inline script or style
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    for name in ("app.js", "app.css"):
        body = client.get(f"/static/{name}").text
        assert "http://" not in body and "https://" not in body  # nothing from the internet
    assert client.get("/static/secret.txt").status_code == 404


@pytest.mark.parametrize("path", ["/api/state", "/api/events", "/api/history",
                                  "/api/history/chart.svg", "/api/history.csv",
                                  "/api/settings", "/api/session"])
def test_no_data_without_the_cookie(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401
    body = r.json()
    assert {k: body[k] for k in ("error", "paired")} == {"error": "not paired", "paired": False}
    assert set(body) <= {"error", "paired", "code_command"}  # nothing of the box's data
    client.cookies.set(COOKIE, "made-up-token")
    assert client.get(path).status_code == 401


def test_pairing_sets_a_strict_long_lived_httponly_cookie(client: TestClient,
                                                          store: PairingStore) -> None:
    r = client.post("/api/pair", json={"code": store.code}, headers=ORIGIN)
    assert r.status_code == 200
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith(f"{COOKIE}=")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert f"max-age={400 * 24 * 3600}" in cookie
    assert client.get("/api/state").json()["state"] == "idle"


def test_wrong_codes_then_locked_over_http(client: TestClient, store: PairingStore,
                                           clock: Clock) -> None:
    wrong = f"{(int(store.code) + 1) % 10**6:06d}"
    codes = [client.post("/api/pair", json={"code": wrong}, headers=ORIGIN).status_code
             for _ in range(MAX_WRONG)]
    assert codes == [403] * (MAX_WRONG - 1) + [429]
    r = client.post("/api/pair", json={"code": store.code}, headers=ORIGIN)
    assert r.status_code == 429 and "locked" in r.json()["error"]
    clock.t += LOCK_S
    assert client.post("/api/pair", json={"code": store.code}, headers=ORIGIN).status_code == 200
    assert client.post("/api/pair", json={"code": "12a456"}, headers=ORIGIN).status_code == 400


def test_announce_says_nothing_until_a_press_on_the_box(client: TestClient, box: FakeBox,
                                                        store: PairingStore, web: WebApp,
                                                        clock: Clock) -> None:
    """Issue 22: an unpaired request made the box speak, mid-hold too. Now a page only
    asks; the box's next idle press says a fresh code; a session is never cut into."""
    old = store.code
    assert client.post("/api/pair/announce", json={}, headers=ORIGIN).json() == {
        "said": False, "press": True}
    assert box.loop.said == []
    assert web.take_press() is True  # the owner presses the box
    text, key = box.loop.said[-1]
    assert store.code != old and " ".join(store.code[:3]) in text
    assert web.take_press() is False  # one press, one code: the next starts a session
    client.post("/api/pair/announce", json={}, headers=ORIGIN)
    clock.t += 121
    assert web.take_press() is False  # the page asked too long ago
    client.post("/api/pair/announce", json={}, headers=ORIGIN)
    pair(client, store)  # a phone paired with the code it had: the next press is the box's
    assert web.take_press() is False
    box.set_state("hold", leg="right", round=1)
    assert client.post("/api/pair/announce", json={}, headers=ORIGIN).json()["busy"] is True
    assert web.take_press() is False and len(box.loop.said) == 1


def test_lockout_is_per_address_grows_and_changes_the_code(store: PairingStore,
                                                           clock: Clock) -> None:
    def wrong() -> str:
        return f"{(int(store.code) + 1) % 10**6:06d}"

    waits = []
    for _ in range(3):
        code_before = store.code
        for _ in range(MAX_WRONG):
            token, why = store.pair(wrong(), "10.0.0.66")
        assert why.startswith("locked") and store.code != code_before
        waits.append(store.locked_for("10.0.0.66"))
        clock.t += waits[-1]
    assert waits == [LOCK_S, 2 * LOCK_S, 4 * LOCK_S]  # each lockout longer
    for _ in range(MAX_WRONG):
        store.pair(wrong(), "10.0.0.66")
    assert store.locked_for("10.0.0.66") > 0
    assert store.locked_for("10.0.0.7") == 0  # the owner's phone is not locked out
    assert store.pair(store.code, "10.0.0.7")[0] is not None
    store.owner_present()  # a press on the box lifts every lockout
    assert store.locked_for("10.0.0.66") == 0


# ---- state-changing requests ---------------------------------------------------------------


def test_press_needs_csrf_and_reaches_the_command_port(client: TestClient, box: FakeBox,
                                                       store: PairingStore) -> None:
    csrf = pair(client, store)
    assert client.post("/api/press", json={"kind": "short"}, headers=ORIGIN).status_code == 403
    bad = {**ORIGIN, "x-csrf-token": "0" * 64}
    assert client.post("/api/press", json={"kind": "short"}, headers=bad).status_code == 403
    assert box.commands.presses == []
    good = {**ORIGIN, "x-csrf-token": csrf}
    assert client.post("/api/press", json={"kind": "short"}, headers=good).status_code == 200
    assert client.post("/api/press", json={"kind": "long"}, headers=good).status_code == 200
    assert client.post("/api/press", json={"kind": "twice"}, headers=good).status_code == 400
    assert box.commands.presses == ["short", "long"]


def test_cross_site_posts_are_refused(client: TestClient, box: FakeBox,
                                      store: PairingStore) -> None:
    csrf = pair(client, store)
    for headers in ({"origin": "http://evil.example", "x-csrf-token": csrf},
                    {"sec-fetch-site": "cross-site", "x-csrf-token": csrf},
                    {"origin": "http://testserver.evil.example", "x-csrf-token": csrf}):
        r = client.post("/api/press", json={"kind": "short"}, headers=headers)
        assert r.status_code == 403 and "cross-site" in r.json()["error"]
    r = client.post("/api/pair", json={"code": store.code},
                    headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    # a plain HTML form can only send form encodings: refused
    r = client.post("/api/press", content="kind=short",
                    headers={**ORIGIN, "x-csrf-token": csrf,
                             "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert box.commands.presses == []


def test_request_bodies_are_size_limited(client: TestClient, store: PairingStore) -> None:
    csrf = pair(client, store)
    big = json.dumps({"changes": {"session.rounds": 2}, "pad": "x" * MAX_BODY})
    r = client.post("/api/settings", content=big,
                    headers={**ORIGIN, "x-csrf-token": csrf, "content-type": "application/json"})
    assert r.status_code == 413
    assert "content-security-policy" in r.headers

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"code": "'
        yield b"1" * (MAX_BODY + 10)
        yield b'"}'

    r = client.post("/api/pair", content=chunks(),
                    headers={**ORIGIN, "content-type": "application/json"})
    assert r.status_code == 413


# ---- settings ------------------------------------------------------------------------------


def post_settings(client: TestClient, csrf: str, changes: dict) -> object:
    return client.post("/api/settings", json={"changes": changes},
                       headers={**ORIGIN, "x-csrf-token": csrf})


def test_settings_lists_the_page_fields_from_the_file(client: TestClient,
                                                      store: PairingStore) -> None:
    pair(client, store)
    data = client.get("/api/settings").json()
    values = {f["key"]: f["value"] for f in data["fields"]}
    assert set(values) == set(BY_KEY)
    assert values["session.hold_seconds"] == 90 and values["voice.rate"] == 150
    hold = next(f for f in data["fields"] if f["key"] == "session.hold_seconds")
    assert (hold["min"], hold["max"]) == (60, 300)
    ceiling = next(f for f in data["fields"] if f["key"] == "sensor.overpull_max_kg")
    assert (ceiling["value"], ceiling["min"], ceiling["max"], ceiling["unit"]) == (15, 2, 100,
                                                                                   "kg")


@pytest.mark.parametrize("key,value", [
    ("session.hold_seconds", 30), ("session.rounds", 2.5), ("voice.volume", "loud"),
    ("session.legs", ["left", "left"]), ("history.nudge_at", "25:00"),
    ("breath.inhale", 1),  # each part valid; the whole breath too fast: cross-check
    ("sensor.overpull_max_kg", 1), ("sensor.overpull_max_kg", "high"),
])
def test_bad_setting_gives_the_config_message_and_changes_nothing(
        client: TestClient, store: PairingStore, config_file: Path, box: FakeBox,
        key: str, value: object) -> None:
    csrf = pair(client, store)
    before = config_file.read_bytes()
    changes = {key: value}
    if key == "breath.inhale":
        changes = {"breath.inhale": 1, "breath.exhale": 1}
    data = tomllib.loads(CONFIG_TEXT)
    for k, v in changes.items():
        section, name = k.split(".")
        data.setdefault(section, {})[name] = v
    with pytest.raises(ConfigError) as expected:
        parse_config(data)
    r = post_settings(client, csrf, changes)
    assert r.status_code == 422
    assert r.json() == {"key": key, "detail": str(expected.value),
                        "message": human(key, str(expected.value))}
    assert r.json()["message"].startswith(BY_KEY[key].label)  # said for a person
    assert config_file.read_bytes() == before
    assert not config_file.with_name("config.toml.bak").exists()
    assert box.commands.reloaded == []


def test_good_setting_is_written_atomically_keeping_comments_and_a_backup(
        client: TestClient, store: PairingStore, config_file: Path, box: FakeBox) -> None:
    csrf = pair(client, store)
    r = post_settings(client, csrf, {"session.hold_seconds": 120, "session.legs": ["left"],
                                     "voice.enabled": False, "history.nudge_at": "19:30",
                                     "sensor.overpull_max_kg": 12.5})
    assert r.status_code == 200, r.text
    text = config_file.read_text()
    assert "# a comment that must survive" in text and "# my box" in text
    config = load_config(config_file)
    assert config.session.hold_seconds == 120 and config.session.legs == ("left",)
    assert config.voice.enabled is False and config.voice.rate == 150
    assert config.history.nudge_at == "19:30" and config.sensor.overpull_max_kg == 12.5
    assert config_file.with_name("config.toml.bak").read_text() == CONFIG_TEXT
    assert box.commands.reloaded == [config]
    assert not [p for p in config_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_settings_file_created_when_missing(box: FakeBox, store: PairingStore, clock: Clock,
                                           tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.toml"
    client = TestClient(WebApp(box, WebOptions(config_path=path, store=store, clock=clock)).app)
    csrf = pair(client, store)
    assert post_settings(client, csrf, {"session.rounds": 3}).status_code == 200
    assert load_config(path).session.rounds == 3


def test_only_page_settings_can_change(client: TestClient, store: PairingStore,
                                       config_file: Path) -> None:
    csrf = pair(client, store)
    r = post_settings(client, csrf, {"pins.button": 4})
    assert r.status_code == 422 and r.json()["message"].startswith("unknown setting pins.button")
    assert config_file.read_text() == CONFIG_TEXT


def test_set_key_edits_text_in_place() -> None:
    text = "[a]\nx = 1 # note\n\n[b]\ny = [\n 1,\n 2,\n]\nz = 3\n"
    assert set_key(text, "a", "x", "2") == "[a]\nx = 2\n\n[b]\ny = [\n 1,\n 2,\n]\nz = 3\n"
    assert set_key(text, "b", "y", "[3]") == "[a]\nx = 1 # note\n\n[b]\ny = [3]\nz = 3\n"
    assert set_key(text, "a", "w", "5").startswith("[a]\nx = 1 # note\nw = 5\n\n[b]\n")
    assert set_key(text, "c", "q", "true").endswith("z = 3\n\n[c]\nq = true\n")
    assert set_key("", "c", "q", "1") == "[c]\nq = 1\n"


# ---- history ---------------------------------------------------------------------------------


def _history(path: Path, now: datetime, days: int = 5) -> None:
    from device.core.records import HoldRecord, SessionRecord
    from device.store.sqlite import History

    with History(path) as h:
        for d in range(days):
            start = now - timedelta(days=d, hours=1)
            holds = (HoldRecord("right", 1, 60, 55 + d, "complete", 3.0, 4.0, 80 - d,
                                "very_tight", 0.5),
                     HoldRecord("left", 1, 60, 60 - d, "complete", settled=5.0, relax_30=25.0,
                                index=95.0 + d))
            h.record(SessionRecord(start, start + timedelta(minutes=5), "complete",
                                   "hamstring", holds))


def test_history_calendar_chart_and_csv(client: TestClient, store: PairingStore,
                                        web: WebApp, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    _history(tmp_path / "history.db", now)
    web.options.now = lambda: now
    pair(client, store)
    data = client.get("/api/history").json()
    assert data["sessions"] == 5
    assert data["calendar"]["streak"] >= 4  # 5 days in a row (the zone may cut the first)
    assert sum(d == 2 for w in data["calendar"]["weeks"] for d in w["days"]) == 5
    assert data["recent"][0]["legs"]["right"] == {"held_s": 55.0, "steadiness": 80,
                                                  "tightness": "very_tight", "index": None,
                                                  "relax_30": None, "settled": None}
    assert data["recent"][0]["legs"]["left"]["tightness"] is None
    # the strap's measure: the left leg had a fit (index 95 the newest), no right to compare
    assert data["recent"][0]["legs"]["left"]["index"] == 95.0
    assert data["recent"][0]["legs"]["left"]["relax_30"] == 25.0
    assert data["recent"][0]["asymmetry"] is None
    svg = client.get("/api/history/chart.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.count('class="dot right"') == 5 + 1  # five holds and the legend
    assert "polyline" in svg.text and "10 holds" in svg.text
    csv = client.get("/api/history.csv")
    assert csv.text.splitlines()[0].startswith("started,ended,outcome")
    assert len(csv.text.splitlines()) == 11
    header = csv.text.splitlines()[0].split(",")
    assert header[12:14] == ["tightness", "overpull_s"]  # the answers and over-pull too
    assert header[14:] == list(RELAX_FIELDS)  # and how each hold relaxed (none here)
    assert csv.text.splitlines()[1].endswith(",very_tight,0.5" + "," * len(RELAX_FIELDS))
    assert "attachment" in csv.headers["content-disposition"]


def test_history_without_a_file_is_empty_not_an_error(client: TestClient,
                                                      store: PairingStore) -> None:
    pair(client, store)
    assert client.get("/api/history").json()["sessions"] == 0
    assert "no holds yet" in client.get("/api/history/chart.svg").text


# ---- the real server: live events ---------------------------------------------------------


def test_events_stream_pushes_state_changes_from_a_queued_subscriber(
        box: FakeBox, tmp_path: Path, config_file: Path) -> None:
    import httpx

    from device.addons.web import attach

    handle = attach(box, "127.0.0.1:0", config_path=config_file, state_dir=tmp_path)
    try:
        assert box.bus.queued == [True]  # never in the device loop's thread
        base = handle.url.rstrip("/")
        with httpx.Client(base_url=base, timeout=5) as http:
            r = http.post("/api/pair", json={"code": handle.code}, headers={"origin": base})
            assert r.status_code == 200
            lines: list[dict] = []
            with http.stream("GET", "/api/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                it = stream.iter_lines()
                for line in it:
                    if line.startswith("data: "):
                        lines.append(json.loads(line[6:]))
                        break
                assert lines[0]["view"]["state"] == "idle" and "breath" in lines[0]
                threading.Timer(0.05, box.commands.press).start()
                for line in it:
                    if line.startswith("data: "):
                        lines.append(json.loads(line[6:]))
                        break
            assert lines[1]["view"]["state"] == "setup"
            assert lines[1]["event"]["kind"] == "state"
    finally:
        handle.close()
    assert not handle.server.thread.is_alive()


def test_attach_refuses_a_busy_port_with_one_line(box: FakeBox, tmp_path: Path) -> None:
    from device.addons.web import attach

    first = attach(box, "127.0.0.1:0", state_dir=tmp_path, config_path=tmp_path / "c.toml")
    try:
        with pytest.raises(ConfigError, match=r"^web.listen = '127.0.0.1:\d+': cannot listen"):
            attach(box, f"127.0.0.1:{first.server.port}", state_dir=tmp_path)
    finally:
        first.close()


def test_announce_line_on_stderr(box: FakeBox, tmp_path: Path) -> None:
    from io import StringIO

    from device.addons.web import attach

    err = StringIO()
    handle = attach(box, "127.0.0.1:0", state_dir=tmp_path, announce=err,
                    config_path=tmp_path / "c.toml")
    try:
        assert err.getvalue() == f"pair with code {handle.code} at {handle.url}\n"
    finally:
        handle.close()


def test_stores_are_not_world_readable(tmp_path: Path) -> None:
    store = PairingStore(tmp_path / "x" / "web-pairing.json")
    assert oct(os.stat(store.path).st_mode & 0o077) == "0o0"


def test_root_forgetting_leaves_the_store_to_the_service_user(tmp_path: Path) -> None:
    need(os.getuid() == 0, "root (to hand a file to another user)", "run the tests as root")
    store = PairingStore(tmp_path / "web-pairing.json")
    os.chown(store.path, 1234, 1234)
    PairingStore(store.path).forget()
    st = store.path.stat()
    assert (st.st_uid, st.st_gid) == (1234, 1234)


# ---- the phone lends its time (issue 25) -------------------------------------------------


def test_clock_takes_the_phone_time_only_while_the_box_clock_is_unsynchronized(
        client: TestClient, box: FakeBox, store: PairingStore) -> None:
    from device.core.timetrust import PHONE, SYNCED, TimeTrust
    from tests.test_timetrust import TRUE_BOOT, FakeSource

    src = FakeSource(mono=50.0)
    trust = TimeTrust(src)
    box.provide(trust)  # as build_box offers it to the add-ons (run)
    now_ms = int(src.truth().timestamp() * 1000)
    assert client.post("/api/clock", json={"now_ms": now_ms}, headers=ORIGIN).status_code == 401
    csrf = pair(client, store)
    headers = {**ORIGIN, "x-csrf-token": csrf}
    for bad in ({"now_ms": "soon"}, {"now_ms": True}, {"now_ms": -5}, {}):
        r = client.post("/api/clock", json=bad, headers=headers)
        assert r.status_code == 400 and "Date.now()" in r.json()["error"], bad
    r = client.post("/api/clock", json={"now_ms": now_ms}, headers=headers)
    assert r.status_code == 200 and r.json() == {"clock": PHONE, "used_phone": True}
    assert trust.stamp().clock == PHONE
    src.synced, src.mono = True, 80.0
    r = client.post("/api/clock", json={"now_ms": now_ms + 3_600_000}, headers=headers)
    assert r.json() == {"clock": SYNCED, "used_phone": False}  # its own clock wins
    assert trust.now() == TRUE_BOOT + timedelta(seconds=80)


def test_page_sends_the_phone_time_and_says_when_it_was_used() -> None:
    static = Path(__file__).resolve().parent.parent / "device" / "addons" / "web" / "static"
    page = (static / "index.html").read_text()
    script = (static / "app.js").read_text()
    assert 'id="clock-note"' in page
    assert '"/api/clock", { body: { now_ms: Date.now() } }' in script
    assert "took the date and time" in script and "lendTime();" in script
