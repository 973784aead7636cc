"""The MQTT add-on on the real box (build_box, the bus, the read model, the command
port) and a real Mosquitto: a scripted session, commands, and a silent broker."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from device.addons.mqtt import box_id_from_hostname, endpoint
from device.addons.transcript import JsonLines
from device.apps.builder import build_box
from device.apps.sim import run_headless
from device.box.clock import RealClock
from device.core.config import Config, MqttSettings, with_overrides
from device.store.sqlite import History
from tests.broker import INSTALL, MOSQUITTO, Mosquitto
from tests.test_mqtt import WAIT_S, Watch, studio, wait_until
from tests.tools import need

need(MOSQUITTO is not None, "mosquitto", INSTALL)  # under CI=true these run, never skip

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    m = Mosquitto(tmp_path / "broker", tls=False)
    m.start()
    yield m
    m.stop()


def mqtt_config(url: str, **mqtt: Any) -> Config:
    return with_overrides(Config(), mqtt={"url": url, "box_id": "box1", **mqtt})


def test_a_scripted_session_arrives_once(broker: Mosquitto, tmp_path: Path) -> None:
    s, store = studio(broker.url, tmp_path / "studio.db")
    try:
        config = mqtt_config(broker.url)
        run_headless(config, None, [], history=tmp_path / "h.db",
                     mqtt=endpoint(config))  # returns once the broker has acknowledged
        with History(tmp_path / "h.db") as h:
            assert h.count() == 1 and h.outbox_count() == 0
        assert wait_until(lambda: store.count() == 1)
        row = store.summary()[0]
        assert row["box"] == "box1" and row["sessions"] == 1
        assert row["mean_hold_s"] == {"right": 60.0, "left": 60.0}
        assert row["sessions_this_week"] == 1
        assert s.settle(0.3, 3.0) and store.count() == 1
    finally:
        s.stop()


def test_sim_command_line_with_mqtt_and_the_studio(broker: Mosquitto, tmp_path: Path) -> None:
    s, store = studio(broker.url, tmp_path / "studio.db")
    s.stop()  # its persistent session keeps the box's session until it comes back
    r = subprocess.run([sys.executable, "-m", "device", "sim", "--headless", "--quiet",
                        "--history", str(tmp_path / "h.db"), "--mqtt", broker.url],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "device", "studio", "--mqtt", broker.url,
                        "--db", str(tmp_path / "studio.db"), "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert row["sessions"] == 1 and row["online"] is False and row["last_session_id"]
    r = subprocess.run([sys.executable, "-m", "device", "studio", "--mqtt", broker.url,
                        "--db", str(tmp_path / "studio.db")],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["box", "online", "last"] and len(lines) == 3
    assert lines[1].split()[:2] == [box_id_from_hostname(), "no"]


def test_bad_mqtt_url_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "device", "sim", "--headless", "--quiet",
                        "--no-history", "--mqtt", "http://x"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 78 and r.stderr.count("\n") == 1
    assert "--mqtt 'http://x': must be" in r.stderr or "mqtt.url" in r.stderr


def _running_box(url: str, tmp_path: Path, speed: float = 20.0, **mqtt: Any) -> Any:
    config = with_overrides(mqtt_config(url, **mqtt), session={"switch": "auto"})
    box = build_box(config, mode="sim", clock=RealClock(speed), history=tmp_path / "h.db",
                    mqtt=endpoint(config))
    thread = threading.Thread(target=box.loop.run, daemon=True)
    thread.start()
    return box, thread


def _stop(box: Any, thread: threading.Thread) -> None:
    box.loop.stop()
    thread.join(WAIT_S)
    box.close()


def test_discovery_names_the_page_and_stats_follow_saved_settings(
        broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the phone page on, Home Assistant's device links to it; settings saved from
    the page (applied between sessions) change the next holds in ``stats``."""
    from device.addons.web import WebHandle

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))  # the pairing store
    watch = Watch(broker.port, ["homeassistant/sensor/+/session_state/config",
                                "stretch-companion/box1/stats"])
    config = with_overrides(mqtt_config(broker.url), session={"switch": "auto"},
                            history={"progression": "off"})
    box = build_box(config, mode="sim", clock=RealClock(20.0), history=tmp_path / "h.db",
                    mqtt=endpoint(config), web="127.0.0.1:0",
                    config_path=tmp_path / "c.toml")
    thread = threading.Thread(target=box.loop.run, daemon=True)
    thread.start()
    stats = "stretch-companion/box1/stats"
    try:
        page = next(a for a in box.addons if isinstance(a, WebHandle))
        topic = "homeassistant/sensor/stretch_companion_box1/session_state/config"
        assert watch.wait(lambda w: w.on(topic) and w.on(stats))
        assert watch.json(topic)[-1]["device"]["configuration_url"] == page.url
        assert watch.json(stats)[-1]["next_hold_s"] == {"right": 60.0, "left": 60.0}
        box.port.reload(with_overrides(box.config, session={"hold_seconds": 90}))
        assert wait_until(lambda: box.config.session.hold_seconds == 90)
        assert box.view().next_hold_s == 90.0
        box.commands.press()  # a state change: the new settings' stats go out
        assert watch.wait(lambda w: w.json(stats)[-1]["next_hold_s"]
                          == {"right": 90.0, "left": 90.0})
    finally:
        _stop(box, thread)
        watch.close()


def test_page_url_names_an_address_the_broker_side_can_reach() -> None:
    from device.addons.mqtt import page_url, resolve
    from device.addons.page import PageAddress

    ep = resolve(MqttSettings(url="mqtt://127.0.0.1:1883", box_id="b"))
    assert page_url(PageAddress("http://0.0.0.0:8321/"), ep) == "http://127.0.0.1:8321/"
    assert page_url(PageAddress("http://192.0.2.7:8321/"), ep) == "http://192.0.2.7:8321/"
    assert page_url(None, ep) is None


def test_a_command_starts_a_session_when_on(broker: Mosquitto, tmp_path: Path) -> None:
    watch = Watch(broker.port, ["homeassistant/button/#", "homeassistant/number/#"])
    box, thread = _running_box(broker.url, tmp_path, commands=True)
    try:
        assert watch.wait(lambda w: len(w.messages) == 3)
        watch.send("stretch-companion/box1/command", '{"next_hold_seconds": 90}')
        watch.send("stretch-companion/box1/command", "start")
        assert wait_until(lambda: box.view().state == "hold")
        assert box.view().hold_planned_s == 90.0
        watch.send("stretch-companion/box1/command", "cancel")
        assert wait_until(lambda: box.view().state in ("cancelled", "idle"))
    finally:
        _stop(box, thread)
        watch.close()


def test_a_next_hold_set_over_mqtt_is_reported_in_stats_and_said(
        broker: Mosquitto, tmp_path: Path) -> None:
    """Home Assistant's "Next hold" number: the stats that follow show it (not the 60 s it
    showed before) and the box says it, as for a hold length chosen on the box."""
    stats = "stretch-companion/box1/stats"
    watch = Watch(broker.port, [stats])
    box, thread = _running_box(broker.url, tmp_path, commands=True)
    try:
        assert watch.wait(lambda w: w.on(stats))
        assert watch.json(stats)[-1]["next_hold_s"] == {"right": 60.0, "left": 60.0}
        watch.send("stretch-companion/box1/command", '{"next_hold_seconds": 90}')
        assert watch.wait(lambda w: w.json(stats)[-1]["next_hold_s"]
                          == {"right": 90.0, "left": 90.0})
        assert wait_until(lambda: any("Next session" in t and "ninety seconds" in t
                                      for t in box.speaker.spoken)), box.speaker.spoken
    finally:
        _stop(box, thread)
        watch.close()


def test_a_command_is_ignored_when_off(broker: Mosquitto, tmp_path: Path) -> None:
    watch = Watch(broker.port, ["homeassistant/+/+/session_state/config"])
    box, thread = _running_box(broker.url, tmp_path)
    try:
        assert watch.wait(lambda w: len(w.messages) == 1)
        watch.send("stretch-companion/box1/command", "start")
        watch.send("homeassistant/status", "online")  # a round trip through the box
        assert watch.wait(lambda w: len(w.messages) == 2)
        assert box.view().state == "idle"
    finally:
        _stop(box, thread)
        watch.close()


def test_a_silent_broker_does_not_slow_the_light_or_the_hold(tmp_path: Path) -> None:
    """A broker that accepts and never answers: the transcript of a real-time hold (at
    30x) shows the planned hold held and no gap in the light frames."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    url = f"mqtt://127.0.0.1:{server.getsockname()[1]}"
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    events = tmp_path / "events.jsonl"
    config = mqtt_config(url)
    try:
        with open(events, "w") as out:
            run_headless(config, "press@1,press@16,press@16.3", [JsonLines(out)], speed=30.0,
                         until=126.0,
                         history=tmp_path / "h.db", mqtt=endpoint(config))
        assert accepted  # the box did connect, and got no answer
        rows = [json.loads(line) for line in events.read_text().splitlines()]
        holds = [r for r in rows if r["kind"] == "hold"]
        assert holds and holds[0]["held_s"] == holds[0]["planned_s"] == 60.0
        start = next(r["t"] for r in rows if r["kind"] == "state" and r["state"] == "hold")
        end = holds[0]["t"]
        frames = [r["t"] for r in rows if r["kind"] == "led" and start <= r["t"] <= end]
        gaps = [b - a for a, b in zip(frames, frames[1:], strict=False)]
        # the light ran through the hold: frames all along (their number depends on how
        # busy the machine is: up to ~50 a real second); the gaps are the point
        assert len(frames) >= 20 and frames[-1] - frames[0] > 0.9 * (end - start)
        print(f"{len(frames)} frames, largest gap {max(gaps):.3f} loop s")
        # loop seconds: 0.5 s of real time at 30x. A loop waiting on the silent broker would
        # stall for its whole connect or keep-alive time (seconds); a busy machine's own
        # scheduling delays (two suites at once on 2 cores) stay well under this
        assert max(gaps) < 15.0
        with History(tmp_path / "h.db") as h:
            assert h.outbox_count() == 1  # the interrupted session waits for a broker
    finally:
        server.close()
        for s in accepted:
            s.close()


def test_broker_restarted_mid_session_nothing_lost(broker: Mosquitto, tmp_path: Path) -> None:
    s, store = studio(broker.url, tmp_path / "studio.db")
    watch = Watch(broker.port, ["stretch-companion/box1/state"])
    box, thread = _running_box(broker.url, tmp_path, speed=100.0)
    try:
        assert wait_until(lambda: box.bus is not None and watch.messages)
        box.commands.press()
        assert wait_until(lambda: box.view().state == "hold")
        broker.restart()  # during the first hold
        assert wait_until(lambda: store.count() == 1, 30)
        row = store.summary()[0]
        assert row["mean_hold_s"] == {"right": 60.0, "left": 60.0}
        # the retained state is right again after the reconnect
        late = Watch(broker.port, ["stretch-companion/box1/state"])
        assert late.wait(lambda w: w.json("stretch-companion/box1/state")[-1:] != [])
        assert late.json("stretch-companion/box1/state")[-1]["state"] == box.view().state
        late.close()
    finally:
        _stop(box, thread)
        watch.close()
        s.stop()


def test_studio_follow_prints_as_sessions_arrive(broker: Mosquitto, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "device", "studio", "--mqtt", broker.url,
                             "--db", str(tmp_path / "s.db"), "--json", "--follow"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    guard = threading.Timer(30, proc.kill)  # a hung studio fails the test, never hangs it
    guard.start()
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == []  # nothing yet
        config = mqtt_config(broker.url)
        run_headless(config, None, [], history=tmp_path / "h.db", mqtt=endpoint(config))
        rows: list[Any] = []
        while not (rows and rows[0]["sessions"] == 1):
            rows = json.loads(proc.stdout.readline())
        assert rows[0]["box"] == "box1"
    finally:
        guard.cancel()
        proc.terminate()
        proc.wait(WAIT_S)
