"""MQTT on a real Mosquitto: discovery, state, the durable outbox, outages, the last will,
Home Assistant's birth message, the ACL, TLS, commands and the studio.

Each test starts its own broker (tests/broker.py) on free loopback ports; nothing sleeps
for a fixed time: every wait is for a message or a state, with a timeout.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device.addons.mqtt import (
    Publisher,
    box_id_from_hostname,
    parse_command,
    resolve,
)
from device.apps.studio import Studio, StudioStore, table
from device.core.config import Config, MqttSettings, parse_config
from device.core.errors import ConfigError
from device.core.records import RELAX_FIELDS
from device.store.sqlite import History
from tests.broker import INSTALL, MOSQUITTO, Mosquitto, make_certs
from tests.mqtt_box import IDLE, START, Ev, session
from tests.tools import need

need(MOSQUITTO is not None, "mosquitto", INSTALL)  # under CI=true these run, never skip

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 10.0


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "broker", users={"box1": "pw1", "box2": "pw2"})
    m.start()
    yield m
    m.stop()


def wait_until(pred: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Watch:
    """A plain subscriber that keeps every message."""

    def __init__(self, port: int, topics: list[str], **login: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        if login:
            c.username_pw_set(login["username"], login["password"])
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe([(t, 1) for t in topics])
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = lambda cl, u, m: self.messages.append((m.topic, m.payload, m.retain))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert self.ready.wait(WAIT_S)

    def on(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in list(self.messages) if t == topic]

    def json(self, topic: str) -> list[Any]:
        return [json.loads(p) for p in self.on(topic)]

    def wait(self, pred: Callable[[Watch], bool], timeout_s: float = WAIT_S) -> bool:
        return wait_until(lambda: pred(self), timeout_s)

    def send(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class StandIn:
    """The box's read model and button port, as the publisher sees them."""

    def __init__(self) -> None:
        self.state = dict(IDLE)
        self.presses: list[str] = []
        self.next_holds: list[float] = []

    def view(self) -> dict[str, Any]:
        return dict(self.state)

    def press(self) -> None:
        self.presses.append("press")

    def long_press(self) -> None:
        self.presses.append("long")


def publisher(url: str, db: Path, box: StandIn | None = None, config: Config | None = None,
              machine: str | None = None, on_clash: Callable[[str], None] | None = None,
              **mqtt: Any) -> Publisher:
    box = box or StandIn()
    settings = MqttSettings(**{"url": url, "box_id": "box1", **mqtt})
    ep = resolve(settings)
    return Publisher(ep, config or Config(), view=box.view, store=History(db), commands=box,
                     next_hold=box.next_holds.append, wall=lambda: START.replace(day=30),
                     backoff_s=(0.05, 0.2), version="0.1.0", keepalive_s=5,
                     machine=machine, on_clash=on_clash).start()


def record(db: Path, pub: Publisher | None, *indexes: int) -> None:
    with History(db, outbox=True) as h:
        for i in indexes:
            h.record(session(i))
    if pub is not None:
        pub.handle(Ev("history", outcome="complete", saved=True))


def studio(url: str, db: Path, **kw: Any) -> tuple[Studio, StudioStore]:
    store = StudioStore(db)
    s = Studio(url, store, **kw).start()
    assert s.subscribed.wait(WAIT_S)
    return s, store


# --------------------------------------------------------------------------- discovery schema

# Home Assistant's MQTT discovery keys, written out in full (no abbreviations), per
# component: what an entity of this box must carry and what it may carry.
COMMON_REQUIRED = {"name", "unique_id", "device", "availability_topic", "payload_available",
                   "payload_not_available"}
COMMON_OPTIONAL = {"icon", "device_class", "unit_of_measurement", "state_class",
                   "value_template", "entity_category"}
SCHEMA = {
    "sensor": (COMMON_REQUIRED | {"state_topic"}, COMMON_OPTIONAL | {"options"}),
    "binary_sensor": (COMMON_REQUIRED | {"state_topic", "payload_on", "payload_off"},
                      COMMON_OPTIONAL),
    "button": (COMMON_REQUIRED | {"command_topic", "payload_press"}, {"icon", "device_class"}),
    "number": (COMMON_REQUIRED | {"command_topic", "state_topic", "min", "max", "step"},
               COMMON_OPTIONAL | {"command_template", "mode"}),
}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version",
               "configuration_url"}
DEVICE_CLASSES = {  # the ones Home Assistant documents for these components
    "sensor": {"enum", "duration", "timestamp", "weight"},
    "binary_sensor": {"running"},
    "number": {"duration"},
    "button": set(),
}
UNITS = {"duration": {"s", "min", "h", "d"}, "weight": {"kg", "g"}}


def check_entity(component: str, payload: dict[str, Any]) -> None:
    required, optional = SCHEMA[component]
    missing = required - set(payload)
    extra = set(payload) - required - optional
    assert not missing, f"{component} {payload.get('unique_id')}: missing {missing}"
    assert not extra, f"{component} {payload.get('unique_id')}: unknown keys {extra}"
    assert set(payload["device"]) <= DEVICE_KEYS
    assert {"identifiers", "name", "model", "sw_version"} <= set(payload["device"])
    if "device_class" in payload:
        assert payload["device_class"] in DEVICE_CLASSES[component]
        if payload["device_class"] in UNITS:
            assert payload["unit_of_measurement"] in UNITS[payload["device_class"]]
        if payload["device_class"] in ("timestamp", "enum"):
            assert "unit_of_measurement" not in payload and "state_class" not in payload
    if "state_class" in payload:
        assert payload["state_class"] in ("measurement", "total", "total_increasing")
        assert "unit_of_measurement" in payload


def template_keys(template: str) -> list[str]:
    return re.findall(r"value_json\.(\w+)", template)


# --------------------------------------------------------------------------- tests


def test_discovery_payloads_follow_the_schema_and_state_is_retained(
        broker: Mosquitto, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    record(db, None, 0, 1)
    watch = Watch(broker.port, ["homeassistant/#", "stretch-companion/#"])
    box = StandIn()
    pub = publisher(broker.url, db, box)
    try:
        assert watch.wait(lambda w: len(w.on("stretch-companion/box1/stats")) >= 1)
        assert watch.wait(lambda w: len([m for m in w.messages
                                         if m[0].startswith("homeassistant/")]) >= 9)
        configs = {t: json.loads(p) for t, p, _ in watch.messages
                   if t.startswith("homeassistant/")}
        state = watch.json("stretch-companion/box1/state")[-1]
        stats = watch.json("stretch-companion/box1/stats")[-1]
        retained = {"stretch-companion/box1/state": state, "stretch-companion/box1/stats": stats}
        ids = set()
        for topic, payload in configs.items():
            component, node, object_id, tail = topic.split("/")[1:]
            assert (node, tail) == ("stretch_companion_box1", "config")
            check_entity(component, payload)
            ids.add(payload["unique_id"])
            assert payload["availability_topic"] == "stretch-companion/box1/availability"
            if "state_topic" in payload:
                for key in template_keys(payload.get("value_template", "")):
                    assert key in retained[payload["state_topic"]], (object_id, key)
        assert len(ids) == len(configs)
        names = {t.split("/")[3] for t in configs}
        assert names == {"session_state", "stretching", "hold_left", "streak",
                         "sessions_this_week", "minutes_today", "last_session",
                         "next_hold_right", "next_hold_left"}
        assert state["state"] == "idle" and "tension" not in state
        assert stats["next_hold_s"] == {"right": 60.0, "left": 60.0}
        assert stats["tightness"] == {"right": None, "left": None, "asymmetry": None}
        assert stats["last_session"] == session(1).ended.isoformat()
        # a hold: the state follows the view, at most once a second
        box.state.update(state="hold", leg="right", round=1, hold_left_s=42.04,
                         hold_planned_s=60.0)
        pub.handle(Ev("state", state="hold", leg="right", round=1))
        assert watch.wait(lambda w: any(s["state"] == "hold" for s in
                                        w.json("stretch-companion/box1/state")))
        held = [s for s in watch.json("stretch-companion/box1/state") if s["state"] == "hold"]
        assert held[0] == {"state": "hold", "stretching": True, "leg": "right", "round": 1,
                           "rounds": 1, "hold_left_s": 42.0, "hold_planned_s": 60.0}
        box.state["hold_left_s"] = 41.0  # no event: the once-a-second update sends it
        assert watch.wait(lambda w: [s["hold_left_s"] for s in
                                     w.json("stretch-companion/box1/state")
                                     if s["state"] == "hold"] == [42.0, 41.0], 3.0)
        # a late subscriber gets the retained state, stats and availability
        late = Watch(broker.port, ["stretch-companion/box1/+"])
        assert late.wait(lambda w: len({t for t, _, r in w.messages if r}) >= 3)
        assert late.on("stretch-companion/box1/availability") == [b"online"]
        late.close()
    finally:
        pub.close()
        watch.close()


def test_sensor_and_commands_add_entities(broker: Mosquitto, tmp_path: Path) -> None:
    watch = Watch(broker.port, ["homeassistant/#"])
    box = StandIn()
    box.state.update(sensor_status="ok", tension=2.345, tension_units="kg")
    ep = resolve(MqttSettings(url=broker.url, box_id="box1", commands=True))
    pub = Publisher(ep, Config(), view=box.view, store=None, wall=lambda: START,
                    sensor=True, backoff_s=(0.05, 0.2),
                    configuration_url="http://box1.local:8080/").start()
    try:
        assert watch.wait(lambda w: len(w.messages) >= 12)
        configs = {t.split("/")[3]: (t.split("/")[1], json.loads(p))
                   for t, p, _ in watch.messages}
        for component, payload in configs.values():
            check_entity(component, payload)
            assert payload["device"]["configuration_url"] == "http://box1.local:8080/"
        assert {"tension", "start", "cancel", "next_hold"} <= set(configs)
        assert configs["tension"][1]["unit_of_measurement"] == "kg"
        assert {"tightness_right", "tightness_left", "tightness_asymmetry"} <= set(configs)
        assert configs["tightness_asymmetry"][1]["value_template"] == (
            "{{ value_json.tightness.asymmetry }}")
        assert configs["start"][1]["payload_press"] == "start"
    finally:
        pub.close()
        watch.close()


def test_a_session_arrives_once_and_is_marked_delivered(broker: Mosquitto,
                                                         tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    watch = Watch(broker.port, ["stretch-companion/+/session"])
    pub = publisher(broker.url, db)
    try:
        assert wait_until(lambda: pub._connected)
        record(db, pub, 0)
        assert watch.wait(lambda w: len(w.messages) == 1)
        assert pub.wait_delivered(WAIT_S)
        message = watch.json("stretch-companion/box1/session")[0]
        assert message["box"] == "box1" and len(message["id"]) == 32
        assert message["started"] == session(0).started.isoformat()
        assert message["holds"][1] == {"leg": "left", "round": 1, "planned_s": 60.0,
                                       "held_s": 58.5, "ended": "early", "mean": 2.9,
                                       "peak": 3.8, "steadiness": 77.0, "tightness": "tight",
                                       "overpull_s": 1.2, **dict.fromkeys(RELAX_FIELDS),
                                       "hurt": False, "pre_s": None, "base_s": None}
        with History(db) as h:
            assert h.outbox_count() == 0 and h.outbox_count(delivered=True) == 1
        pub.handle(Ev("history", outcome="complete", saved=True))  # nothing new: no resend
        watch.send("probe/x", "x")
        assert not watch.wait(lambda w: len(w.messages) > 1, 0.3)
    finally:
        pub.close()
        watch.close()


def test_broker_down_at_start_every_session_arrives_in_order(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "device.addons.mqtt")
    s, store = studio(broker.url, tmp_path / "studio.db")  # the persistent session exists
    s.stop()
    broker.stop()
    db = tmp_path / "h.db"
    pub = publisher(broker.url, db)
    try:
        record(db, pub, 0, 1, 2)
        record(db, pub, 3)
        assert wait_until(lambda: pub.client._reconnect_delay == 0.2, 5)  # retried a few times
        broker.start()
        assert wait_until(lambda: pub._connected)
        assert pub.wait_delivered(WAIT_S)
        s, store = studio(broker.url, tmp_path / "studio.db")
        assert wait_until(lambda: store.count() == 4)
        started = [row[2] for row in store.received()]
        assert started == [session(i).started.isoformat() for i in range(4)]
        down = [r for r in caplog.records if "cannot connect" in r.getMessage()]
        assert len(down) == 1, [r.getMessage() for r in caplog.records]
        assert "Connection refused" in down[0].getMessage()
    finally:
        pub.close()
        s.stop()


def test_broker_restarted_mid_session_nothing_lost(broker: Mosquitto, tmp_path: Path) -> None:
    s, store = studio(broker.url, tmp_path / "studio.db")
    db = tmp_path / "h.db"
    pub = publisher(broker.url, db)
    try:
        record(db, pub, 0)
        assert wait_until(lambda: store.count() == 1)
        broker.stop()
        assert wait_until(lambda: not pub._connected)
        record(db, pub, 1, 2)
        broker.start()
        assert pub.wait_delivered(WAIT_S)
        assert wait_until(lambda: store.count() == 3)
        assert [r[2] for r in store.received()] == [session(i).started.isoformat()
                                                    for i in range(3)]
    finally:
        pub.close()
        s.stop()


def _box_process(url: str, db: Path, box_id: str = "box1") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.mqtt_box", url, str(db), box_id],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, bufsize=1)


def _read_until(proc: subprocess.Popen[str], word: str, timeout_s: float = WAIT_S) -> str:
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(word):
                found.append(line.strip())
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout_s)
    assert found, f"the box never said {word!r}"
    return found[0]


def test_kill_9_between_session_end_and_ack_delivers_once_after_restart(
        broker: Mosquitto, tmp_path: Path) -> None:
    s, store = studio(broker.url, tmp_path / "studio.db")
    db = tmp_path / "h.db"
    box = _box_process(broker.url, db)
    try:
        _read_until(box, "connected")
        broker.pause()  # the broker takes the message but cannot acknowledge it
        assert box.stdin is not None
        box.stdin.write("record\n")
        assert _read_until(box, "handed") == "handed 1"
        box.kill()
        box.wait()
        broker.resume()
        with History(db) as h:
            assert h.outbox_count() == 1  # stored, not acknowledged
        box = _box_process(broker.url, db)
        _read_until(box, "delivered 1")
        with History(db) as h:
            assert h.outbox_count() == 0 and h.count() == 1
        assert wait_until(lambda: store.count() == 1)
        s.stop()  # the studio comes back: whatever the broker still holds is a duplicate
        s, store2 = studio(broker.url, tmp_path / "studio.db")
        assert s.settle(0.3, 3.0)
        assert store2.count() == 1
    finally:
        box.kill()
        box.wait()
        s.stop()


def test_last_will_says_offline_after_a_crash(broker: Mosquitto, tmp_path: Path) -> None:
    watch = Watch(broker.port, ["stretch-companion/box1/availability"])
    box = _box_process(broker.url, tmp_path / "h.db")
    try:
        assert watch.wait(lambda w: w.on("stretch-companion/box1/availability")[-1:]
                          == [b"online"])
        box.kill()
        assert watch.wait(lambda w: w.on("stretch-companion/box1/availability")[-1:]
                          == [b"offline"])
    finally:
        box.kill()
        box.wait()
        watch.close()


def test_clean_stop_says_offline_and_waits_for_acks(broker: Mosquitto, tmp_path: Path) -> None:
    watch = Watch(broker.port, ["stretch-companion/box1/#"])
    db = tmp_path / "h.db"
    pub = publisher(broker.url, db)
    assert wait_until(lambda: pub._connected)
    record(db, pub, 0)
    pub.close(wait_s=3)
    with History(db) as h:
        assert h.outbox_count() == 0
    assert watch.wait(lambda w: w.on("stretch-companion/box1/availability")[-1:]
                      == [b"offline"])
    watch.close()


def test_birth_message_republishes_discovery(broker: Mosquitto, tmp_path: Path) -> None:
    watch = Watch(broker.port, ["homeassistant/sensor/+/session_state/config"])
    pub = publisher(broker.url, tmp_path / "h.db")
    try:
        assert watch.wait(lambda w: len(w.messages) == 1)
        watch.send("homeassistant/status", "offline")
        watch.send("homeassistant/status", "online")
        assert watch.wait(lambda w: len(w.messages) == 2)
    finally:
        pub.close()
        watch.close()


def test_acl_confines_a_box_to_its_own_base(broker: Mosquitto, tmp_path: Path) -> None:
    pw = tmp_path / "pw1"
    pw.write_text("pw1\n")
    pw.chmod(0o600)
    watch = Watch(broker.auth_port, ["stretch-companion/#", "homeassistant/#"],
                  username="studio", password="studio-pw")
    url = f"mqtt://127.0.0.1:{broker.auth_port}"
    own = publisher(url, tmp_path / "a.db", username="box1", password_file=str(pw))
    # box1's credentials, but configured as box2: the broker drops what it publishes
    other = publisher(url, tmp_path / "b.db", username="box1", password_file=str(pw),
                      box_id="box2")
    try:
        record(tmp_path / "a.db", own, 0)
        record(tmp_path / "b.db", other, 0)
        assert own.wait_delivered(WAIT_S) and other.wait_delivered(WAIT_S)
        assert watch.wait(lambda w: len(w.on("stretch-companion/box1/session")) == 1)
        watch.send("probe", "x")  # a round trip after both: nothing more is coming
        topics = {t for t, _, _ in watch.messages}
        assert not [t for t in topics if "box2" in t], topics
        assert "homeassistant/sensor/stretch_companion_box1/session_state/config" in topics
    finally:
        own.close()
        other.close()
        watch.close()


def test_wrong_password_is_refused_with_a_clear_line(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    pw.chmod(0o600)
    pub = publisher(f"mqtt://127.0.0.1:{broker.auth_port}", tmp_path / "h.db",
                    username="box1", password_file=str(pw))
    try:
        assert wait_until(lambda: any("refused" in r.getMessage() for r in caplog.records))
        line = next(r.getMessage() for r in caplog.records if "refused" in r.getMessage())
        assert "Not authorized" in line or "password" in line.lower(), line
    finally:
        pub.close()


def test_tls_with_the_right_ca_connects_and_a_wrong_ca_is_refused(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"mqtts://127.0.0.1:{broker.tls_port}"
    wrong = make_certs(tmp_path / "other", "other")
    bad = publisher(url, tmp_path / "a.db", ca_file=str(wrong["ca"]))
    good = publisher(url, tmp_path / "b.db", ca_file=str(broker.certs["ca"]))
    try:
        assert wait_until(lambda: good._connected)
        assert wait_until(lambda: any("not trusted" in r.getMessage()
                                      for r in caplog.records))
        line = next(r.getMessage() for r in caplog.records if "not trusted" in r.getMessage())
        assert re.search(r"self.signed|verify failed|local issuer", line), line
        assert str(wrong["ca"]) in line
        assert not bad._connected
    finally:
        bad.close()
        good.close()


def test_commands_when_on(broker: Mosquitto, tmp_path: Path,
                          caplog: pytest.LogCaptureFixture) -> None:
    box = StandIn()
    watch = Watch(broker.port, ["homeassistant/button/#"])
    pub = publisher(broker.url, tmp_path / "h.db", box, commands=True)
    try:
        assert watch.wait(lambda w: len(w.messages) == 2)  # start, cancel: subscribed
        topic = "stretch-companion/box1/command"
        watch.send(topic, "start")
        assert wait_until(lambda: box.presses == ["press"])
        box.state["state"] = "hold"
        watch.send(topic, "start")  # already in a session: ignored
        watch.send(topic, "cancel")
        assert wait_until(lambda: box.presses == ["press", "long"])
        watch.send(topic, '{"next_hold_seconds": 90}')
        assert wait_until(lambda: box.next_holds == [90.0])
        watch.send(topic, "reboot")
        watch.send(topic, '{"next_hold_seconds": 9000}')
        watch.send(topic, "press")
        assert wait_until(lambda: box.presses == ["press", "long", "press"])
        ignored = [r for r in caplog.records if "ignored command" in r.getMessage()]
        assert len(ignored) == 1 and "'reboot'" in ignored[0].getMessage()
    finally:
        pub.close()
        watch.close()


def test_commands_when_off_are_ignored(broker: Mosquitto, tmp_path: Path) -> None:
    box = StandIn()
    watch = Watch(broker.port, ["homeassistant/#"])
    pub = publisher(broker.url, tmp_path / "h.db", box)
    try:
        assert watch.wait(lambda w: len(w.messages) == 9)
        watch.send("stretch-companion/box1/command", "start")
        watch.send("homeassistant/status", "online")  # a round trip through the box
        assert watch.wait(lambda w: len([t for t, _, _ in w.messages
                                         if t.endswith("/config")]) == 18)
        assert box.presses == []
        assert not [t for t, _, _ in watch.messages if "/button/" in t or "/number/" in t]
    finally:
        pub.close()
        watch.close()


def test_a_silent_broker_never_blocks_the_publisher(tmp_path: Path) -> None:
    """A broker that accepts and never answers: handing events stays instant."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    db = tmp_path / "h.db"
    box = StandIn()
    pub = publisher(f"mqtt://127.0.0.1:{port}", db, box)
    try:
        assert wait_until(lambda: accepted)
        box.state.update(state="hold", leg="right", hold_left_s=30.0, hold_planned_s=60.0)
        t0 = time.monotonic()
        for i in range(50):
            pub.handle(Ev("state", state="hold", leg="right", round=1))
            record(db, pub, i)
        assert time.monotonic() - t0 < WAIT_S  # returns; nothing waits for the broker
        assert not pub._connected
        assert not pub.wait_delivered(0.2)
        with History(db) as h:
            assert h.outbox_count() == 50  # all still waiting, none lost
    finally:
        pub.close()
        server.close()
        for s in accepted:
            s.close()


# --------------------------------------------------------------------------- config & units


def test_config_refuses_unsafe_settings(tmp_path: Path) -> None:
    def err(**mqtt: Any) -> str:
        with pytest.raises(ConfigError) as e:
            parse_config({"mqtt": mqtt})
        return str(e.value)

    assert "unencrypted" in err(url="mqtt://broker.lan", username="box1")
    parse_config({"mqtt": {"url": "mqtt://127.0.0.1", "username": "box1"}})  # loopback: fine
    parse_config({"mqtt": {"url": "mqtt://broker.lan", "username": "b", "allow_insecure": True}})
    assert err(base_topic="a/#") .startswith("mqtt.base_topic = 'a/#': must be")
    assert err(box_id="../x").startswith("mqtt.box_id = '../x': must be")
    assert err(url="mqtt://u:secret@host").startswith("mqtt.url = ")
    assert "mqtts://" in err(url="mqtt://127.0.0.1", ca_file="/x")
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by every user.*chmod 600"):
        resolve(MqttSettings(url="mqtt://127.0.0.1", username="b", password_file=str(pw)))
    pw.chmod(0o600)
    assert resolve(MqttSettings(url="mqtt://127.0.0.1", username="b",
                                password_file=str(pw))).password == "secret"


def test_config_exits_78_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[mqtt]\nurl = "http://broker"\n')
    r = subprocess.run([sys.executable, "-m", "device", "config", "--check", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 78
    assert r.stderr.count("\n") == 1 and "mqtt.url = 'http://broker'" in r.stderr


def test_config_check_refuses_a_readable_password_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nurl = "mqtt://127.0.0.1"\nusername = "b"\n'
                   f'password_file = "{pw}"\n')
    r = subprocess.run([sys.executable, "-m", "device", "config", "--check", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 78 and r.stderr.count("\n") == 1
    assert "readable by every user (mode 0644); run chmod 600" in r.stderr
    pw.chmod(0o600)
    r = subprocess.run([sys.executable, "-m", "device", "config", "--check", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_box_id_and_base_topic_defaults() -> None:
    assert box_id_from_hostname("Stretch Box.local") == "stretch-box"
    assert box_id_from_hostname("§§") == "box"
    ep = resolve(MqttSettings(url="mqtt://127.0.0.1"), hostname="Pi_4")
    assert ep.box_id == "pi_4" and ep.base == "stretch-companion/pi_4"
    ep = resolve(MqttSettings(url="mqtt://127.0.0.1", box_id="a", base_topic="home/{box_id}/s"))
    assert ep.topic("session") == "home/a/s/session"
    with pytest.raises(ValueError):
        ep.topic("../b/session")


def test_parse_command() -> None:
    assert parse_command(b"start").name == "start"
    assert parse_command(b'"cancel"').name == "cancel"
    assert parse_command(b'{"next_hold_seconds": 75}').seconds == 75.0
    for bad in (b"", b"stop", b'{"next_hold_seconds": 30}', b'{"next_hold_seconds": true}',
                b'{"next_hold_seconds": 90, "x": 1}', b"\xff", b"[1]"):
        with pytest.raises(ValueError, match="must be start, cancel, press"):
            parse_command(bad)


def test_studio_table_and_json(broker: Mosquitto, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    pub = publisher(broker.url, db)
    record(db, pub, 0, 1)
    assert pub.wait_delivered(WAIT_S)
    pub.close()
    r = subprocess.run([sys.executable, "-m", "device", "studio", "--mqtt", broker.url,
                        "--db", str(tmp_path / "s.db"), "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    # retained stats and availability arrive; the sessions were sent before the studio's
    # persistent session existed, so the broker did not keep them for it
    assert rows == [{"box": "box1", "online": False, "last_session": rows[0]["last_session"],
                     "last_session_id": None, "last_outcome": "complete", "sessions": 0,
                     "sessions_this_week": 1, "streak_days": 1, "mean_hold_s": {},
                     "last_steadiness": None, "last_tightness": {},
                     "tightness_index": {"right": None, "left": None, "asymmetry": None}}]
    assert rows[0]["last_session"]  # the retained summary, at once
    r = subprocess.run([sys.executable, "-m", "device", "studio", "--mqtt", broker.url,
                        "--db", str(tmp_path / "s.db")],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[1]
    assert line.startswith("box1") and " complete " in line  # last session and outcome
    assert "sessions are those sent since this studio first connected" in r.stdout
    assert "the broker keeps none from before" in r.stdout
    s, store = studio(broker.url, tmp_path / "s2.db")
    try:
        pub = publisher(broker.url, db)
        record(db, pub, 2)
        assert wait_until(lambda: store.count() == 1)
        pub.close()
        text = table(store.summary())
        assert "box1" in text and "60/58" in text and "79.5" in text
        assert "easy/tight" in text.splitlines()[1] and "tightness R/L" in text
        assert store.summary()[0]["last_tightness"] == {"right": "easy", "left": "tight"}
    finally:
        s.stop()


def test_two_boxes_with_one_box_id_stay_connected_and_say_so_once(
        broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every new Pi is `raspberrypi`: two boxes with that box_id knocked each other off the
    broker ("connection lost" once a second). Now each has a client id of its own, and the
    second box's owner message tells both, once, with the fix."""
    caplog.set_level(logging.WARNING)
    clashes: list[str] = []
    first = publisher(broker.url, tmp_path / "a.db", machine="aaaa1111",
                      on_clash=clashes.append)
    try:
        assert wait_until(lambda: first._connected)
        second = publisher(broker.url, tmp_path / "b.db", machine="bbbb2222",
                           on_clash=clashes.append)
        try:
            assert wait_until(lambda: len(clashes) == 2), clashes
            assert first.clash and second.clash
            assert "box_id 'box1'" in first.clash and "[mqtt] box_id" in first.clash
            time.sleep(1.0)  # a second later: both still connected, nothing said again
            assert first._connected and second._connected
            said = [r.getMessage() for r in caplog.records if "uses box_id" in r.getMessage()]
            assert len(said) == 2  # once per box
            lost = [r for r in caplog.records if "connection lost" in r.getMessage()]
            assert lost == []
        finally:
            second.close()
    finally:
        first.close()


def test_the_same_box_restarting_is_not_a_clash(broker: Mosquitto, tmp_path: Path) -> None:
    clashes: list[str] = []
    one = publisher(broker.url, tmp_path / "a.db", machine="aaaa1111", on_clash=clashes.append)
    assert wait_until(lambda: one._connected)
    one.close()
    again = publisher(broker.url, tmp_path / "a.db", machine="aaaa1111",
                      on_clash=clashes.append)
    try:
        assert wait_until(lambda: again._connected)
        time.sleep(0.5)
        assert clashes == [] and again.clash == ""
    finally:
        again.close()
