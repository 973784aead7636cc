"""A twentieth of a core (issue 23), the short form of ``python -m bench --only quota``:
the box with every add-on on (real voice and player, strap, MQTT, the page with one open
stream) runs a session with a 3 s hold in a control group limited to 5 % of one core,
and keeps its timing: the hold within 20 ms, the light's spacing as without the quota
(+100 ms), cues started within 150 ms, presses answered within 100 ms.

It runs in real time (about 40 s: the session once without the quota, once with it): the
quota is a property of real time. Needs root (a cgroup), mosquitto, espeak-ng and aplay;
under CI=true a missing one fails."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench import quota
from bench.suite import worker_env
from tests.broker import INSTALL, MOSQUITTO, Mosquitto
from tests.tools import need


def test_a_session_keeps_its_timing_at_a_twentieth_of_a_core(tmp_path: Path) -> None:
    why = quota.available()
    need(why is None, "a CPU-limited cgroup", why or "")
    need(MOSQUITTO is not None, "mosquitto", INSTALL)
    need(shutil.which("espeak-ng") is not None, "espeak-ng",
         "apt-get install espeak-ng libespeak-ng1")
    need(shutil.which("aplay") is not None, "aplay", "apt-get install alsa-utils")
    env = worker_env(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=False).start()
    try:
        free = quota.run(3.0, ["right"], None, broker.url, tmp_path, env, 240)
        limited = quota.run(3.0, ["right"], 5.0, broker.url, tmp_path, env, 240)
    finally:
        broker.stop()
    s = quota.summary(limited, free)
    assert limited["cgroup"]["pct"] == 5.0 and limited["cgroup"]["nr_periods"] > 0
    assert limited["states"][:2] == ["setup", "hold"] and limited["states"][-1] == "idle"
    assert s["holds"] == 1 and s["complete"]
    assert limited["mqtt_connected"] and limited["page_status"] == 200
    assert limited["page_updates"] > 0 and limited["cue_ms"]
    assert s["hold_error_ms"] is not None and s["hold_error_ms"] <= 20.0, s
    assert s["light_max_gap_ms"] <= s["free_light_max_gap_ms"] + 100.0, s
    assert s["cue_max_ms"] <= 150.0, s
    assert s["press_max_ms"] is not None and s["press_max_ms"] <= 100.0, s
