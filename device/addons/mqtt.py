"""MQTT: the box publishes to a broker (paho-mqtt 2.x; Home Assistant, a studio).

One queued subscriber of the bus: it never runs in the loop's thread, so a broker that is
down, slow or silent never delays a cue or the light. paho's own network thread connects,
reconnects with backoff and keeps the QoS 1 messages it was handed until the broker
acknowledges them.

Topics under the base (``stretch-companion/{box_id}`` unless configured):

* ``availability``: ``online`` / ``offline`` (retained; the last will says ``offline``).
* ``state``: retained JSON of the read model on each state change, at most once a second
  during a hold.
* ``session``: one JSON message per finished, cancelled or interrupted session (QoS 1),
  from the durable outbox in the history database (written with the session; marked
  delivered only on the broker's acknowledgement; re-sent after a restart).
* ``stats``: retained JSON: sessions this week, streak, today's minutes, last session,
  each leg's next hold.
* ``command`` (only with ``commands = true``): ``start``, ``cancel``, ``press`` or
  ``{"next_hold_seconds": N}``; as JSON a command may carry ``"at"`` (Unix seconds) and is
  then refused outside ``COMMAND_VALID_S`` of the box's clock. A retained command is never
  acted on (and is cleared); each accepted command is echoed in the ``state`` message.

Home Assistant discovery goes under ``{discovery_prefix}/{component}/{node}/{object}/config``
and is re-published on every connect and on Home Assistant's birth message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from device.addons.mqtt_inbound import Debounce, quiet_paho
from device.addons.page import PageAddress
from device.box.clock import wall_clock
from device.box.events import CATALOGUE, Event, SessionEvent
from device.box.port import BoxPort
from device.core import VERSION
from device.core.config import Config, MqttSettings, _mqtt_checks, _mqtt_url
from device.core.errors import ConfigError
from device.core.machine import State
from device.core.payload import BadPayload, parse_json
from device.core.progression import next_hold
from device.core.records import LEGS, session_to_dict
from device.core.routine import fill, spoken_duration
from device.core.streaks import minutes_today, zone_of
from device.core.tightness import session_tightness
from device.core.timetrust import TimeTrust
from device.store.protocol import SessionStore
from device.store.sqlite import History, HistoryError, OutboxEntry

if TYPE_CHECKING:  # imported where used: plain mqtt:// never loads OpenSSL
    import ssl

log = logging.getLogger(__name__)

STATES = tuple(state.value for state in State)
ROOT = "stretch-companion"
NODE = "stretch_companion"
HOLD_RANGE = (60, 300)  # next_hold_seconds accepts what session.hold_seconds accepts
STATE_EVERY_S = 1.0  # at most one state message a second during a hold
KINDS = ("state", "hold", "session", "history")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Endpoint:
    """Resolved [mqtt] settings: where to connect, as whom, and the topics."""

    url: str
    host: str
    port: int
    tls: bool
    username: str
    password: str | None
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    box_id: str
    base: str
    discovery: bool
    prefix: str
    commands: bool

    def topic(self, name: str) -> str:
        """``{base}/{name}``; ``name`` is one of ours, never from outside."""
        if name not in ("availability", "state", "session", "stats", "command", "owner"):
            raise ValueError(f"not a box topic: {name!r}")
        return f"{self.base}/{name}"


def machine_tag() -> str:
    """8 hex digits that tell this machine from others (from /etc/machine-id, else the
    hostname and a random number): two boxes sharing a ``box_id`` still differ here."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return hashlib.sha256(text.encode()).hexdigest()[:8]
    return hashlib.sha256(f"{socket.gethostname()}-{uuid.uuid4()}".encode()).hexdigest()[:8]


def clash_message(box_id: str, other_host: str) -> str:
    """What a person reads when two boxes share a box_id (the log and the page)."""
    return (f"another box ({other_host or 'another machine'}) uses box_id {box_id!r} on this "
            "broker: they would overwrite each other's state and stats. Give each box its "
            "own: [mqtt] box_id = \"a-name\" in the config (the default is the hostname, "
            "and every new Pi is called raspberrypi).")


def box_id_from_hostname(hostname: str | None = None) -> str:
    """The hostname reduced to ``[a-z0-9_-]`` (other characters become ``-``), or ``box``."""
    name = (hostname if hostname is not None else socket.gethostname()).split(".")[0].lower()
    reduced = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in name)
    return reduced.strip("-")[:64] or "box"


def parse_url(url: str) -> tuple[str, int, bool]:
    """``mqtt[s]://host[:port]`` -> (host, port, tls); raises ConfigError."""

    problem = _mqtt_url(url) if url else "a broker url such as mqtt://127.0.0.1:1883"
    if problem:
        raise ConfigError(f"--mqtt {url!r}: must be {problem}")
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    return parts.hostname or "", parts.port or (8883 if tls else 1883), tls


def read_password(path: str) -> str:
    """The first line of ``path``; refuses a file others can read."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"mqtt.password_file = {path!r}: cannot read it "
                          f"({exc.strerror})") from None
    if mode & stat.S_IROTH:
        raise ConfigError(f"mqtt.password_file = {path!r}: readable by every user "
                          f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 (or 640) on it")
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"mqtt.password_file = {path!r}: empty; put the password on its "
                          "first line")
    return lines[0]


def resolve(settings: MqttSettings, url: str | None = None,
            hostname: str | None = None) -> Endpoint:
    """Check and resolve ``settings`` (``url`` from ``--mqtt`` wins); raises ConfigError."""
    if url:
        from dataclasses import replace


        settings = replace(settings, url=url)
        parse_url(url)
        _mqtt_checks(settings)
    host, port, tls = parse_url(settings.url)
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(settings, key)
        if value and not os.access(value, os.R_OK):
            raise ConfigError(f"mqtt.{key} = {value!r}: cannot read it")
    password = read_password(settings.password_file) if settings.password_file else None
    box_id = settings.box_id or box_id_from_hostname(hostname)
    base = (settings.base_topic or f"{ROOT}/{{box_id}}").replace("{box_id}", box_id)
    return Endpoint(
        url=settings.url, host=host, port=port, tls=tls, username=settings.username,
        password=password, ca_file=settings.ca_file or None,
        cert_file=settings.cert_file or None, key_file=settings.key_file or None,
        box_id=box_id, base=base, discovery=settings.discovery,
        prefix=settings.discovery_prefix, commands=settings.commands)


def tls_context(ep: Endpoint) -> ssl.SSLContext:
    """Verifies the broker against ``ca_file`` (or the system store) and its host name."""
    import ssl  # only mqtts:// needs OpenSSL (lean.without_tls keeps it out of plain `run`)

    context = ssl.create_default_context(cafile=ep.ca_file)
    if ep.cert_file and ep.key_file:
        context.load_cert_chain(ep.cert_file, ep.key_file)
    return context


def _why_not(ep: Endpoint, timeout_s: float = 3.0) -> str:
    """One attempt at the TCP connection and TLS handshake, to say why connecting fails."""
    if not ep.tls:
        try:
            with socket.create_connection((ep.host, ep.port), timeout=timeout_s):
                pass
        except OSError as exc:
            return exc.strerror or str(exc) or type(exc).__name__
        return "the broker closed the connection"
    import ssl  # only mqtts:// needs OpenSSL (lean.without_tls keeps it out of plain `run`)

    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout_s) as sock:
            with tls_context(ep).wrap_socket(sock, server_hostname=ep.host):
                pass
    except ssl.SSLCertVerificationError as exc:
        hint = f"mqtt.ca_file = {ep.ca_file!r}" if ep.ca_file else "the system's CA store"
        return (f"the broker's TLS certificate is not trusted ({exc.verify_message}); "
                f"checked against {hint}")
    except ssl.SSLError as exc:
        return f"TLS handshake failed ({exc.reason or exc})"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return "the broker closed the connection"


# --------------------------------------------------------------------------- payloads


def _round(value: Any, digits: int = 1) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def state_payload(view: dict[str, Any]) -> dict[str, Any]:
    """The ``state`` message from the read model: never the light."""
    out = {
        "state": view.get("state"),
        "stretching": view.get("state") == "hold",
        "leg": view.get("leg"),
        "round": view.get("round"),
        "rounds": view.get("rounds"),
        "hold_left_s": _round(view.get("hold_left_s")),
        "hold_planned_s": _round(view.get("hold_planned_s")),
    }
    if view.get("sensor_status", "absent") != "absent":
        out["tension"] = _round(view.get("tension"), 2)
        out["tension_units"] = view.get("tension_units")
        out["sensor_status"] = view.get("sensor_status")
    if "voice_status" in view:  # the box's one voice status (as the screen and page show)
        out["voice_status"] = view.get("voice_status")
        out["voice_off_reason"] = view.get("voice_off_reason") or ""
    return out


def session_payload(entry: OutboxEntry, box_id: str) -> dict[str, Any]:
    """The ``session`` message of an outbox entry: its id, the box, and the session in the
    history's own JSON shape."""
    return {"id": entry.msg_id, "box": box_id, **session_to_dict(entry.session)}


def next_holds(history: SessionStore, config: Config,
               of: Callable[[str], float] | None = None) -> dict[str, float]:
    """Each leg's next hold (s): ``of(leg)`` when the box can say (its own plan: answers,
    the idle cycle, progression), else from the history by the box's rule (the newest
    tightness answer when the routine asks, then the progression)."""
    if of is not None:
        return {leg: float(of(leg)) for leg in config.session.legs}
    legs = config.session.legs
    return {leg: next_hold(config, partial(history.leg_progress, leg))[0] for leg in legs}


def stats_payload(history: SessionStore, config: Config, now: datetime,
                  tz: tzinfo | None = None,
                  next_hold_of: Callable[[str], float] | None = None) -> dict[str, Any]:
    """The retained ``stats`` message (days and weeks in ``tz``; the next holds from
    ``next_hold_of`` when given, see ``next_holds``)."""
    recent = history.recent(1)
    today = history.sessions(since=now - timedelta(days=2))
    return {  # every read bounded by date: the cost follows the streak, not the years
        "sessions_this_week": history.sessions_this_week(now, tz),
        "streak_days": history.streak_days(now, tz),
        "minutes_today": round(minutes_today(today, now, tz), 1),
        "last_session": recent[0].ended.isoformat() if recent else None,
        "last_outcome": recent[0].outcome if recent else None,
        "next_hold_s": next_holds(history, config, next_hold_of),
        "tightness": latest_tightness(history),
        "updated": now.isoformat(),
    }


def latest_tightness(history: SessionStore, look_back: int = 30) -> dict[str, float | None]:
    """Each leg's tightness index in the newest session that has one, and their
    asymmetry (percent, right minus left over their mean); None where there is none."""
    out: dict[str, float | None] = {"right": None, "left": None, "asymmetry": None}
    for s in history.recent(look_back):
        figures = session_tightness(s.holds)
        if figures is None:
            continue
        for leg in LEGS:
            if out[leg] is None:
                out[leg] = figures[leg]["index"]
        if out["asymmetry"] is None:
            out["asymmetry"] = figures["asymmetry"]["index"]
        if all(v is not None for v in out.values()):
            break
    return out


def discovery_messages(ep: Endpoint, version: str, *, legs: Iterable[str] = LEGS,
                       sensor: bool = False, tension_units: str | None = None,
                       configuration_url: str | None = None) -> list[tuple[str, dict]]:
    """Home Assistant MQTT discovery: (config topic, payload) for each entity of the box."""
    node = f"{NODE}_{ep.box_id}"
    device: dict[str, Any] = {
        "identifiers": [node],
        "name": f"Stretch Companion {ep.box_id}",
        "manufacturer": "Stretch Companion",
        "model": "Stretch Companion box",
        "sw_version": version,
    }
    if configuration_url:
        device["configuration_url"] = configuration_url
    common = {
        "availability_topic": ep.topic("availability"),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    }
    state, stats = ep.topic("state"), ep.topic("stats")
    entities: list[tuple[str, str, dict[str, Any]]] = [
        ("sensor", "session_state", {
            "name": "Session state", "state_topic": state,
            "value_template": "{{ value_json.state }}", "device_class": "enum",
            "options": list(STATES), "icon": "mdi:human-handsdown"}),
        ("binary_sensor", "stretching", {
            "name": "Stretching now", "state_topic": state,
            "value_template": "{{ 'ON' if value_json.stretching else 'OFF' }}",
            "payload_on": "ON", "payload_off": "OFF", "device_class": "running"}),
        ("sensor", "hold_left", {
            "name": "Hold time left", "state_topic": state,
            "value_template": "{{ value_json.hold_left_s | default(0, true) | round(0) }}",
            "device_class": "duration", "unit_of_measurement": "s",
            "state_class": "measurement"}),
        ("sensor", "streak", {
            "name": "Streak", "state_topic": stats,
            "value_template": "{{ value_json.streak_days }}", "device_class": "duration",
            "unit_of_measurement": "d", "state_class": "measurement"}),
        ("sensor", "sessions_this_week", {
            "name": "Sessions this week", "state_topic": stats,
            "value_template": "{{ value_json.sessions_this_week }}",
            "unit_of_measurement": "sessions", "state_class": "measurement"}),
        ("sensor", "minutes_today", {
            "name": "Stretch minutes today", "state_topic": stats,
            "value_template": "{{ value_json.minutes_today }}", "device_class": "duration",
            "unit_of_measurement": "min", "state_class": "measurement"}),
        ("sensor", "last_session", {
            "name": "Last session", "state_topic": stats,
            "value_template": "{{ value_json.last_session }}", "device_class": "timestamp"}),
    ]
    for leg in legs:
        entities.append(("sensor", f"next_hold_{leg}", {
            "name": f"Next {leg} hold", "state_topic": stats,
            "value_template": f"{{{{ value_json.next_hold_s.{leg} }}}}",
            "device_class": "duration", "unit_of_measurement": "s",
            "state_class": "measurement"}))
    if sensor:
        units = tension_units or "kg"
        tension: dict[str, Any] = {
            "name": "Strap tension", "state_topic": state,
            "value_template": "{{ value_json.tension }}", "unit_of_measurement": units,
            "state_class": "measurement"}
        if units == "kg":
            tension["device_class"] = "weight"
        entities.append(("sensor", "tension", tension))
        for leg in legs:  # the strap's objective measure (README: a measuring instrument)
            entities.append(("sensor", f"tightness_{leg}", {
                "name": f"Tightness index {leg}", "state_topic": stats,
                "value_template": f"{{{{ value_json.tightness.{leg} }}}}",
                "unit_of_measurement": "%", "state_class": "measurement",
                "icon": "mdi:arrow-expand-horizontal"}))
        entities.append(("sensor", "tightness_asymmetry", {
            "name": "Tightness asymmetry (right - left)", "state_topic": stats,
            "value_template": "{{ value_json.tightness.asymmetry }}",
            "unit_of_measurement": "%", "state_class": "measurement",
            "icon": "mdi:scale-unbalanced"}))
    if ep.commands:
        command = ep.topic("command")
        entities += [
            ("button", "start", {"name": "Start session", "command_topic": command,
                                 "payload_press": "start", "icon": "mdi:play"}),
            ("button", "cancel", {"name": "Cancel session", "command_topic": command,
                                  "payload_press": "cancel", "icon": "mdi:stop"}),
            ("number", "next_hold", {
                "name": "Next hold", "command_topic": command,
                "command_template": '{"next_hold_seconds": {{ value }}}',
                "state_topic": stats,
                "value_template": "{{ value_json.next_hold_s.values() | first }}",
                "min": HOLD_RANGE[0], "max": HOLD_RANGE[1], "step": 5, "mode": "box",
                "device_class": "duration", "unit_of_measurement": "s"}),
        ]
    out = []
    for component, object_id, payload in entities:
        full = {**payload, "unique_id": f"{node}_{object_id}", **common}
        out.append((f"{ep.prefix}/{component}/{node}/{object_id}/config", full))
    return out


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    """A parsed command: ``start``, ``cancel``, ``press`` or ``next_hold`` with seconds;
    ``at``: when it was sent (Unix seconds) if it says."""

    name: str
    seconds: float | None = None
    at: float | None = None


COMMAND_MAX_BYTES = 256  # the longest command is about 60 bytes
COMMAND_VALID_S = 30.0  # a command carrying "at" is good this long (and this much ahead)


def parse_command(payload: bytes, now: float | None = None) -> Command:
    """Parse a ``command`` message; raises ValueError with one line saying what is allowed.
    With ``now`` (Unix seconds), a command carrying ``"at"`` must be within
    ``COMMAND_VALID_S`` of it."""
    allowed = ('must be start, cancel, press or {"next_hold_seconds": N} with N from '
               f"{HOLD_RANGE[0]} to {HOLD_RANGE[1]}")
    if len(payload) > COMMAND_MAX_BYTES:
        raise ValueError(f"command of {len(payload)} bytes: {allowed}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"command (not UTF-8): {allowed}") from None
    shown = text[:60] + ("..." if len(text) > 60 else "")
    value: Any = text
    if text.startswith(("{", '"', "[")):
        try:
            value = parse_json(text, max_bytes=COMMAND_MAX_BYTES, max_depth=1)
        except BadPayload:
            raise ValueError(f"command {shown!r}: {allowed}") from None
    at = None
    if isinstance(value, dict) and "at" in value:
        value = dict(value)
        at = value.pop("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise ValueError(f"command {shown!r}: \"at\" must be Unix seconds")
        if now is not None and not abs(now - at) <= COMMAND_VALID_S:
            age = "in the future" if at > now else f"{min(now - at, 1e9):.0f} s old"
            raise ValueError(f"command {shown!r}: sent {age} (good for "
                             f"{COMMAND_VALID_S:.0f} s); expired")
        if set(value) == {"command"}:
            value = value["command"]
    if isinstance(value, str) and value in ("start", "cancel", "press"):
        return Command(value, at=at)
    if isinstance(value, dict) and set(value) == {"next_hold_seconds"}:
        n = value["next_hold_seconds"]
        if (isinstance(n, (int, float)) and not isinstance(n, bool)
                and HOLD_RANGE[0] <= n <= HOLD_RANGE[1]):
            return Command("next_hold", float(n), at=at)
    raise ValueError(f"command {shown!r}: {allowed}")


class CommandPort(Protocol):
    """What commands drive: the box's button (thread-safe)."""

    def press(self) -> None: ...

    def long_press(self) -> None: ...


# --------------------------------------------------------------------------- publisher


def quiet_client(base: type, keepalive_s: float) -> type:
    """paho's ``Client`` whose network thread (``loop_start``) waits in ``select`` up to
    the keep-alive instead of paho's 1 s: with no traffic it wakes only to send the
    keep-alive ping and read its answer (paho wakes it at once for anything to send, and
    ``disconnect`` too, through its socket pair). Reconnecting is paho's own."""

    class QuietClient(base):
        def _thread_main(self) -> None:  # paho's loop_start thread body, longer select
            try:
                self.loop_forever(timeout=max(1.0, float(keepalive_s)),
                                  retry_first_connection=True)
            finally:
                self._thread = None

    return QuietClient


class Publisher:
    """The box's MQTT client: hand it bus events with ``handle``; ``close`` at the end.

    ``view`` returns the read model as a dict; ``store`` is a ``History`` on the box's
    history file (its own connection) for the outbox and the stats; ``wall`` gives the
    wall-clock time (aware); ``commands`` (or None) is the button port; ``next_hold`` (or
    None) sets the next session's hold length.
    """

    def __init__(self, ep: Endpoint, config: Config | Callable[[], Config], *,
                 view: Callable[[], dict[str, Any]],
                 store: History | None, wall: Callable[[], datetime],
                 tz: tzinfo | None = None, commands: CommandPort | None = None,
                 next_hold: Callable[[float], None] | None = None, version: str = "",
                 sensor: bool = False,
                 configuration_url: str | Callable[[], str | None] | None = None,
                 backoff_s: tuple[float, float] = (1.0, 60.0), keepalive_s: int = 30,
                 client_id: str | None = None,
                 next_hold_of: Callable[[str], float] | None = None,
                 machine: str | None = None,
                 on_clash: Callable[[str], None] | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.ep = ep
        # box-unique: two boxes with one box_id no longer knock each other off the broker
        self.machine = machine or machine_tag()
        self.on_clash = on_clash
        self.clash = ""  # set once another live box with our box_id is seen
        self._config = config
        self.next_hold_of = next_hold_of
        self._stats_config: Config | None = None  # the config the last stats were made with
        self.view = view
        self.store = store
        self.wall = wall
        self.tz = tz
        self.commands = commands
        self.next_hold = next_hold
        self.version = version or _version()
        self.sensor = sensor
        self.configuration_url = configuration_url
        self._lock = threading.RLock()
        self._acked = threading.Condition(self._lock)
        # Locks: paho holds its own mutex while it calls on_publish, which takes _lock; so
        # paho is never called with _lock held. Only the outbox thread hands sessions to
        # paho and writes acknowledgements to the history file.
        self._inflight: dict[int, int] = {}  # paho mid -> outbox entry id
        self._handed: set[int] = set()  # outbox ids given to paho in this process
        self._acks: list[int] = []  # acknowledged outbox ids, not yet written
        self._orphans: dict[int, float] = {}  # acknowledged mids not (yet) known: when
        self._wake = threading.Event()
        self._connected = False
        self._ever_connected = False
        self._down_since: float | None = time.monotonic()
        self._outage_logged = False
        self._store_failing = False
        self._bad_command_logged = False
        self._retained_logged = False
        self._last_command: dict[str, Any] | None = None
        self._births = Debounce(self._discovery_again)
        self._holding = False
        self._last_state: dict[str, Any] | None = None
        self._drain_waiters: list[threading.Event] = []
        self._closed = threading.Event()
        self._tick = threading.Event()
        self.delivered = 0  # sessions the broker acknowledged (this process)

        c: mqtt.Client = quiet_client(mqtt.Client, keepalive_s)(
                        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id=client_id or f"{NODE}-{ep.box_id}-{self.machine}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        if ep.username:
            c.username_pw_set(ep.username, ep.password)
        if ep.tls:
            c.tls_set_context(tls_context(ep))
        c.will_set(ep.topic("availability"), "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=backoff_s[0], max_delay=backoff_s[1])  # type: ignore[arg-type]
        c.max_queued_messages_set(10000)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.suppress_exceptions = True  # a bug in a callback is logged, never kills paho's thread
        c.enable_logger(logging.getLogger(f"{__name__}.paho"))
        logging.getLogger(f"{__name__}.paho").setLevel(logging.ERROR)
        quiet_paho(logging.getLogger(f"{__name__}.paho"))  # our one line per outage says it
        self.client = c
        self._keepalive = keepalive_s
        self._ticker = threading.Thread(target=self._tick_loop, name="mqtt-state", daemon=True)
        self._outbox = threading.Thread(target=self._outbox_loop, name="mqtt-outbox",
                                        daemon=True)

    @property
    def config(self) -> Config:
        """The box's config now (a getter follows one saved from the phone page)."""
        c = self._config
        return c if isinstance(c, Config) else c()

    # ---- life ---------------------------------------------------------------------------

    def start(self) -> Publisher:
        """Connect in the background (never blocks) and queue what the outbox holds."""
        self.client.connect_async(self.ep.host, self.ep.port, keepalive=self._keepalive)
        self.client.loop_start()
        self._ticker.start()
        self._outbox.start()
        self._wake.set()
        return self

    def wait_delivered(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every handed session to be acknowledged; True if so.

        Returns at once when the broker was never reached (nothing to wait for)."""
        deadline = time.monotonic() + timeout_s
        self.drain_now()
        with self._acked:
            while self._inflight or self._acks:
                left = deadline - time.monotonic()
                if left <= 0 or not self._ever_connected:
                    return False
                self._acked.wait(min(left, 0.1))
            return True

    def close(self, wait_s: float = 0.0) -> None:
        """Wait up to ``wait_s`` for acknowledgements, say ``offline``, disconnect."""
        if self._closed.is_set():
            return
        if wait_s > 0 and self._ever_connected:
            self.wait_delivered(wait_s)
        self._closed.set()
        self._births.cancel()
        self._tick.set()
        self._wake.set()
        if self._outbox.is_alive():
            self._outbox.join(timeout=5)
        if self._connected:
            info = self.client.publish(self.ep.topic("availability"), "offline", qos=1,
                                       retain=True)
            try:
                info.wait_for_publish(timeout=min(max(wait_s, 0.5), 2.0))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        if self._ticker.is_alive():
            self._ticker.join(timeout=2)
        left = len(self._inflight)
        if left:
            log.info("MQTT: %d session(s) not yet acknowledged; they stay in the outbox", left)

    # ---- the bus ------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """A bus event (queued subscriber: runs off the loop's thread). Never raises."""
        try:
            kind = event.kind
            if kind == "state":
                data = event.to_json()
                self._holding = data.get("state") == "hold"
                if self._holding:
                    self._tick.set()
                self.publish_state(data)
                if self._stats_config is not None and self.config is not self._stats_config:
                    self.publish_stats()  # new settings (the phone page): new next holds
            elif kind == "history":
                self.drain_now()
                self.publish_stats()
            elif kind == "session":
                self.publish_state()
        except Exception:  # noqa: BLE001 - a publisher must never stop the box
            log.exception("MQTT: could not handle a %s event", getattr(event, "kind", "?"))

    def _tick_loop(self) -> None:
        """While a hold runs: the state once a second (the loop is never asked)."""
        while not self._closed.is_set():
            self._tick.wait()
            self._tick.clear()
            while self._holding and not self._closed.is_set():
                if self._closed.wait(STATE_EVERY_S):
                    return
                if self._holding:
                    try:
                        self.publish_state()
                    except Exception:  # noqa: BLE001
                        log.debug("MQTT: state tick failed", exc_info=True)

    # ---- publishing ---------------------------------------------------------------------

    def _send(self, topic: str, payload: Any, qos: int = 0, retain: bool = False) -> None:
        if not self._connected:
            return  # retained messages are all sent again on connect
        text = payload if isinstance(payload, str) else json.dumps(payload,
                                                                   separators=(",", ":"))
        self.client.publish(topic, text, qos=qos, retain=retain)

    def publish_state(self, event: dict[str, Any] | None = None, force: bool = False) -> None:
        """The retained ``state`` message from the read model (state, leg and round from
        ``event`` when given: the model may have moved on since); unchanged ones are
        skipped unless ``force``."""
        view = self.view()
        if event is not None:
            if view.get("state") != event.get("state"):
                view = {**view, "hold_left_s": None, "hold_planned_s": None}
            view = {**view, **{k: event.get(k) for k in ("state", "leg", "round")}}
        payload = state_payload(view)
        if self._last_command is not None:
            payload["command"] = self._last_command  # the last command taken (echo)
        with self._lock:
            if payload == self._last_state and not force:
                return
            self._last_state = payload
        self._send(self.ep.topic("state"), payload, qos=0, retain=True)

    def publish_stats(self) -> None:
        """The retained ``stats`` message from the history."""
        if self.store is None or not self._connected:
            return
        config = self.config
        try:
            payload = stats_payload(self.store, config, self.wall(), self.tz,
                                    self.next_hold_of)
        except HistoryError as exc:
            self._store_failed(exc)
            return
        self._stats_config = config
        self._send(self.ep.topic("stats"), payload, qos=1, retain=True)

    def page_url(self) -> str | None:
        """The phone page's address for Home Assistant (None: no page)."""
        url = self.configuration_url
        return url() if callable(url) else url

    def publish_discovery(self) -> None:
        """Home Assistant discovery for every entity (retained)."""
        if not self.ep.discovery:
            return
        view = self.view()
        units = view.get("tension_units") if view.get("sensor_status") != "absent" else None
        for topic, payload in discovery_messages(
                self.ep, self.version, legs=self.config.session.legs, sensor=self.sensor,
                tension_units=units, configuration_url=self.page_url()):
            self._send(topic, payload, qos=1, retain=True)

    def publish_all(self) -> None:
        """Availability, discovery, state and stats (on connect and on HA's birth)."""
        self._send(self.ep.topic("availability"), "online", qos=1, retain=True)
        self._announce_owner()
        self.publish_discovery()
        self.publish_state(force=True)
        self.publish_stats()

    def _announce_owner(self) -> None:
        """Who publishes under this box_id (retained): this machine and its hostname."""
        self._send(self.ep.topic("owner"), {"machine": self.machine,
                                            "host": socket.gethostname()}, qos=1, retain=True)

    def _owner_seen(self, payload: bytes, retained: bool) -> None:
        """Another machine's owner message under our box_id. Sent live (not the retained
        one of a box long gone) it is a box running now: a clash, said once. The first
        time, this box announces itself again, so the other one hears of it too."""
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("machine") in (None, self.machine):
            return
        if retained or self.clash:
            return
        self.clash = clash_message(self.ep.box_id, str(data.get("host") or ""))
        log.warning("MQTT: %s", self.clash)
        if self.on_clash is not None:
            try:
                self.on_clash(self.clash)
            except Exception:  # noqa: BLE001
                log.debug("MQTT: clash not handed on", exc_info=True)
        self._announce_owner()

    def drain_now(self, timeout_s: float = 5.0) -> None:
        """Have the outbox thread hand paho what the outbox holds now; wait for it."""
        if self.store is None or self._closed.is_set():
            return
        done = threading.Event()
        with self._lock:
            self._drain_waiters.append(done)
        self._wake.set()
        done.wait(timeout_s)

    def _outbox_loop(self) -> None:
        """The outbox thread: write acknowledgements, hand paho new entries, in order."""
        while True:
            self._wake.wait()  # woken by a session, an acknowledgement, a connect, close
            self._wake.clear()
            with self._lock:
                waiters, self._drain_waiters = self._drain_waiters, []
            try:
                self._write_acks()
                if not self._closed.is_set():
                    self._drain()
            except Exception:  # noqa: BLE001 - the thread must live on
                log.exception("MQTT: outbox thread")
            for done in waiters:
                done.set()
            if self._closed.is_set():
                self._write_acks()
                return

    def _write_acks(self) -> None:
        with self._lock:
            acks = list(self._acks)  # they stay listed until written: "delivered" means stored
        if not acks:
            return
        now = datetime.now(UTC)
        for entry_id in acks:
            if self.store is not None:
                try:
                    self.store.outbox_delivered(entry_id, now)
                except HistoryError as exc:
                    self._store_failed(exc)  # sent again next run: the id de-duplicates
        with self._acked:
            del self._acks[:len(acks)]  # only this thread removes; others append behind
            self.delivered += len(acks)
            self._acked.notify_all()

    def _drain(self) -> None:
        """Hand paho every undelivered outbox entry it does not hold yet, oldest first."""
        if self.store is None:
            return
        import paho.mqtt.client as mqtt

        try:
            pending = self.store.outbox_pending(limit=100000)
        except HistoryError as exc:
            self._store_failed(exc)
            return
        with self._lock:
            entries = [e for e in pending if e.id not in self._handed]
        for entry in entries:
            text = json.dumps(session_payload(entry, self.ep.box_id), separators=(",", ":"))
            started = time.monotonic()
            info = self.client.publish(self.ep.topic("session"), text, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.debug("MQTT: paho's queue is full; session %s waits", entry.msg_id)
                break
            with self._acked:
                self._handed.add(entry.id)
                acked_at = self._orphans.pop(info.mid, None)
                if acked_at is not None and acked_at >= started:
                    self._acks.append(entry.id)  # the broker was quicker than this line
                    self._wake.set()
                else:
                    self._inflight[info.mid] = entry.id

    def _store_failed(self, exc: Exception) -> None:
        if not self._store_failing:
            self._store_failing = True
            log.warning("MQTT: history file unavailable (%s); sessions wait in it", exc)

    # ---- paho callbacks (paho's thread) ------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._connected = False
            if not self._outage_logged:
                self._outage_logged = True
                log.warning("MQTT: broker %s refused the connection: %s; retrying",
                            self.ep.url, reason)
            return
        self._connected = True
        self._ever_connected = True
        if self._outage_logged and self._down_since is not None:
            log.warning("MQTT: connected to %s again after %.0f s", self.ep.url,
                        time.monotonic() - self._down_since)
        else:
            log.info("MQTT: connected to %s as %s", self.ep.url, self.ep.base)
        self._outage_logged = False
        self._down_since = None
        subs = [(f"{self.ep.prefix}/status", 1)] if self.ep.discovery else []
        subs.append((self.ep.topic("owner"), 1))  # another box with our box_id?
        if self.ep.commands:
            subs.append((self.ep.topic("command"), 1))
        if subs:
            client.subscribe(subs)
        self.publish_all()
        self._wake.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._went_down("cannot connect")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was = self._connected
        self._connected = False
        if self._closed.is_set():
            return
        if was:
            self._down_since = time.monotonic()
        self._went_down(f"connection lost ({reason})" if was else "cannot connect")

    def _went_down(self, what: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
        if self._outage_logged or self._closed.is_set():
            return
        self._outage_logged = True
        why = _why_not(self.ep) if what == "cannot connect" else ""
        log.warning("MQTT: %s to %s%s; retrying with backoff, sessions wait in the outbox",
                    what, self.ep.url, f": {why}" if why else "")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        """paho's thread, holding paho's mutex: note the acknowledgement, nothing more."""
        now = time.monotonic()
        with self._acked:
            entry_id = self._inflight.pop(mid, None)
            if entry_id is None:
                self._orphans[mid] = now  # stats, discovery... or a session not yet noted
                if len(self._orphans) > 1000:
                    self._orphans = {m: t for m, t in self._orphans.items() if now - t < 60}
                return
            self._acks.append(entry_id)
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            if msg.topic == f"{self.ep.prefix}/status":
                if msg.payload.strip() == b"online":
                    self._births.birth()
            elif msg.topic == self.ep.topic("owner"):
                self._owner_seen(msg.payload, bool(msg.retain))
            elif self.ep.commands and msg.topic == self.ep.topic("command"):
                if msg.retain:
                    self._retained_command(msg.payload)
                elif msg.payload:  # an empty one is a cleared retained command
                    self._command(msg.payload)
        except Exception as exc:  # noqa: BLE001 - one line, never a traceback per message
            log.warning("MQTT: could not handle a message on %s (%s: %s)", msg.topic,
                        type(exc).__name__, exc)

    def _discovery_again(self) -> None:
        """Home Assistant said it is online (debounced: a storm of births is one send)."""
        log.info("MQTT: Home Assistant is online; discovery sent again")
        self.publish_all()

    def _retained_command(self, payload: bytes) -> None:
        """A retained command would run again at every reconnect: never acted on, and
        cleared at the broker (an empty retained message) when the ACL lets the box."""
        if payload:
            if not self._retained_logged:
                self._retained_logged = True
                log.warning("MQTT: ignored a retained command on %s (commands are never "
                            "retained); clearing it", self.ep.topic("command"))
            self.client.publish(self.ep.topic("command"), b"", qos=1, retain=True)

    def _command(self, payload: bytes) -> None:
        try:
            command = parse_command(payload, self.wall().timestamp())
        except ValueError as exc:
            if not self._bad_command_logged:
                self._bad_command_logged = True
                log.warning("MQTT: ignored %s (said once)", exc)
            else:
                log.debug("MQTT: ignored %s", exc)
            return
        state = self.view().get("state")
        idle = state in ("idle", "done", "cancelled", None)
        if command.name == "start" and idle or command.name == "press":
            if self.commands is not None:
                self.commands.press()
                self._echo(command)
        elif command.name == "cancel" and not idle:
            if self.commands is not None:
                self.commands.long_press()
                self._echo(command)
        elif command.name == "next_hold" and command.seconds is not None:
            if self.next_hold is not None:
                self.next_hold(command.seconds)
                self._echo(command)
                self.publish_stats()  # Home Assistant shows the hold it set
            else:
                log.info("MQTT: next_hold_seconds is not supported here; ignored")
        else:
            log.info("MQTT: %s ignored while %s", command.name, state)

    def _echo(self, command: Command) -> None:
        """Say on the ``state`` topic which command was taken, and when."""
        self._last_command = {"name": command.name, "at": self.wall().isoformat()}
        if command.seconds is not None:
            self._last_command["seconds"] = command.seconds
        self.publish_state(force=True)


def _version() -> str:
    """The box's version for discovery: the package's constant. Not
    ``importlib.metadata.version``, which scans every installed distribution and brings in
    email, zipfile and csv: 0.6 MB of the box's resident memory (bench startup.run_rss_mb)."""
    return VERSION


# --------------------------------------------------------------------------- the add-on


def endpoint(config: Config, url: str | None = None) -> Endpoint | None:
    """The resolved [mqtt] settings (``--mqtt URL`` wins), or None when MQTT is off.
    Raises ConfigError (exit 78) for bad settings, before anything is built."""
    if not (url or config.mqtt.url):
        return None
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        raise ConfigError("mqtt.url is set but paho-mqtt is not installed: "
                          "pip install 'stretch-companion[mqtt]'") from None
    return resolve(config.mqtt, url)


class NextHold:
    """``{"next_hold_seconds": N}``: the next session's holds last N s (then the plan
    goes back to the box's own progression)."""

    def __init__(self, loop: BoxPort) -> None:
        self.loop = loop
        self.seconds: float | None = None
        self._plan = loop.set_hold_planner(self.plan)
        loop.on(SessionEvent, self._session_over, name="mqtt-next-hold")

    def plan(self, leg: str) -> float:
        return self.seconds if self.seconds is not None else float(self._plan(leg))

    def set(self, seconds: float) -> None:
        """Thread-safe: known at once (so the ``stats`` sent next report it), and confirmed
        by voice from the loop's thread ("Next session: ninety seconds a leg.")."""
        self.seconds = float(seconds)
        self.loop.call_soon(self._confirm)

    def _confirm(self) -> None:
        if self.seconds is None:
            return

        try:
            template = self.loop.routine.idle["hold_length"]
        except (AttributeError, KeyError, TypeError):
            template = "Next session: {duration} a leg."
        try:
            self.loop.say(fill(template, duration=spoken_duration(self.seconds)),
                          "mqtt.next_hold")
        except Exception:  # noqa: BLE001 - a failing voice never stops anything
            log.warning("MQTT: could not confirm the next hold by voice", exc_info=True)

    def _session_over(self, event: SessionEvent) -> None:
        self.seconds = None


class MqttAddon:
    """The publisher attached to a box: a queued bus subscriber; ``close`` waits (at most
    ``wait_s`` real seconds) for the broker to acknowledge the sessions handed to it."""

    def __init__(self, box: BoxPort, publisher: Publisher, wait_s: float) -> None:
        self.box = box
        self.publisher = publisher
        self.wait_s = wait_s
        self.sub = box.subscribe(publisher.handle, [CATALOGUE[k] for k in KINDS], queued=True,
                                 name="mqtt")

    def close(self) -> None:
        if self.sub.queue is not None:
            self.sub.queue.drain(2.0)  # the last session's history event first
        self.box.unsubscribe(self.sub)
        self.publisher.close(wait_s=self.wait_s)
        if self.publisher.store is not None:
            self.publisher.store.close()


def page_url(page: PageAddress | None, ep: Endpoint) -> str | None:
    """The phone page's address when the box serves it (for Home Assistant's device
    page): a page on every address is named by the address the broker is reached from."""
    if page is None:
        return None
    parts = urlsplit(page.url)
    host = parts.hostname or ""
    if host in ("0.0.0.0", "::", ""):
        host = _local_address(ep.host) or socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}:{parts.port}/"


def _local_address(broker_host: str) -> str | None:
    """This machine's address on the way to ``broker_host`` (no packet is sent)."""
    try:
        family = socket.getaddrinfo(broker_host, None)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((broker_host, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def attach(box: BoxPort, ep: Endpoint, *, history: Path | None = None,
           wall_start: datetime | None = None, wait_s: float = 3.0) -> MqttAddon:
    """Attach the MQTT publisher to ``box``: state and stats, discovery, the sessions in
    ``history``'s outbox (its own connection to the file), and commands when on."""
    store = None
    if history is not None:
        try:
            store = History(history)
        except HistoryError as exc:
            log.warning("MQTT: history file unavailable (%s); no sessions are published", exc)
    next_hold = NextHold(box) if ep.commands else None
    wall = wall_clock(box.clock, wall_start)
    trust = box.find(TimeTrust)
    if trust is not None:  # days and weeks counted from a trusted date when there is one
        system_wall = wall
        wall = lambda: trust.now() or system_wall()  # noqa: E731
    publisher = Publisher(
        ep, lambda: box.config, view=lambda: box.view().to_json(), store=store,
        wall=wall, tz=zone_of(box.config.history.timezone),
        commands=box.commands if ep.commands else None,
        next_hold=next_hold.set if next_hold is not None else None,
        sensor=box.view().strap_fitted,
        configuration_url=lambda: page_url(box.find(PageAddress), ep), next_hold_of=box.next_hold,
        on_clash=lambda text: box.update_view(box_clash=text))
    addon = MqttAddon(box, publisher, wait_s)
    publisher.start()
    return addon
