"""What comes in over MQTT on a real Mosquitto (issue 22): a retained command is never
acted on and is cleared, commands carry a validity window, an accepted one is echoed on
the state topic, a storm of Home Assistant births is one discovery, one line per outage."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from device.addons.mqtt import Publisher, parse_command, resolve
from device.addons.mqtt_inbound import Debounce
from device.core.config import Config, MqttSettings
from device.store.sqlite import History
from tests.broker import INSTALL, MOSQUITTO, Mosquitto
from tests.test_mqtt import StandIn, Watch, wait_until
from tests.tools import need

WAIT_S = 10.0
COMMAND = "stretch-companion/box1/command"
STATE = "stretch-companion/box1/state"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    need(MOSQUITTO is not None, "mosquitto", INSTALL)
    m = Mosquitto(tmp_path / "broker", tls=False)
    m.start()
    yield m
    m.stop()


def publisher(url: str, db: Path, box: StandIn, **mqtt: Any) -> Publisher:
    ep = resolve(MqttSettings(**{"url": url, "box_id": "box1", **mqtt}))
    return Publisher(ep, Config(), view=box.view, store=History(db), commands=box,
                     next_hold=box.next_holds.append, wall=lambda: datetime.now(UTC),
                     backoff_s=(0.05, 0.2), version="0.1.0", keepalive_s=5).start()


def test_a_retained_command_is_ignored_cleared_and_live_ones_are_echoed(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watch = Watch(broker.port, [COMMAND, STATE])
    watch.send(COMMAND, "press", retain=True)  # left behind: would start a session
    box = StandIn()
    pub = publisher(broker.url, tmp_path / "h.db", box, commands=True)
    try:
        assert watch.wait(lambda w: b"" in w.on(COMMAND))  # the box cleared it
        pub.client.reconnect()  # as after a broker restart: nothing retained comes back
        assert wait_until(lambda: pub._connected)
        now = time.time()
        watch.send(COMMAND, json.dumps({"command": "start", "at": now - 120}))  # stale
        watch.send(COMMAND, json.dumps({"command": "start", "at": now + 3600}))  # ahead
        watch.send(COMMAND, json.dumps({"command": "start", "at": now}))
        assert wait_until(lambda: box.presses == ["press"])
        time.sleep(0.2)
        assert box.presses == ["press"]  # never the retained one, never the stale ones
        echoed = [json.loads(p) for p in watch.on(STATE) if p]
        assert wait_until(lambda: any(
            json.loads(p).get("command", {}).get("name") == "start"
            for p in watch.on(STATE) if p)), echoed
        lines = [r.getMessage() for r in caplog.records]
        assert sum("retained command" in m for m in lines) == 1
        assert any("expired" in m for m in lines)
    finally:
        pub.close()
        watch.close()


def test_parse_command_window_and_bounds() -> None:
    assert parse_command(b'{"command": "cancel", "at": 1000}', 1010.0).name == "cancel"
    assert parse_command(b'{"next_hold_seconds": 90, "at": 1000}', 1000.0).seconds == 90
    for bad, now in ((b'{"command": "cancel", "at": 1000}', 1031.0),
                     (b'{"command": "cancel", "at": true}', None),
                     (b'{"command": "reboot", "at": 1000}', 1000.0),
                     (b"[" * 5000, None), (b" " * 300 + b"start", None)):
        with pytest.raises(ValueError):
            parse_command(bad, now)


def test_a_storm_of_births_is_one_discovery(broker: Mosquitto, tmp_path: Path) -> None:
    box = StandIn()
    watch = Watch(broker.port, ["homeassistant/+/+/+/config"])
    pub = publisher(broker.url, tmp_path / "h.db", box)
    try:
        assert watch.wait(lambda w: len(w.messages) == 9)  # on connect
        one_set = len(watch.messages)
        for _ in range(300):
            watch.client.publish("homeassistant/status", "online", qos=0)
        assert watch.wait(lambda w: len(w.messages) >= 2 * one_set)
        time.sleep(1.5)  # longer than the debounce: nothing more comes
        assert len(watch.messages) == 2 * one_set, len(watch.messages)
        assert pub._births.folded >= 250
    finally:
        pub.close()
        watch.close()


def test_debounce_folds_a_burst_and_keeps_a_gap() -> None:
    fired: list[float] = []
    d = Debounce(lambda: fired.append(time.monotonic()), delay_s=0.05, gap_s=0.2)
    for _ in range(100):
        d.birth()
    assert wait_until(lambda: len(fired) == 1)
    d.birth()
    d.birth()
    assert wait_until(lambda: len(fired) == 2)
    assert fired[1] - fired[0] >= 0.19
    d.cancel()


def test_one_line_per_outage(broker: Mosquitto, tmp_path: Path,
                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "device.addons.mqtt")
    box = StandIn()
    pub = publisher(broker.url, tmp_path / "h.db", box)
    try:
        assert wait_until(lambda: pub._connected)
        for _ in range(3):
            caplog.clear()
            broker.stop()
            assert wait_until(lambda: not pub._connected)
            time.sleep(0.6)  # several reconnect attempts (backoff 0.05 .. 0.2 s)
            broker.start()
            assert wait_until(lambda: pub._connected)
            said = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(said) == 2, [r.getMessage() for r in said]  # down, back
    finally:
        pub.close()
