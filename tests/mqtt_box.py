"""A box process for the MQTT tests that kill it: its publisher over a history file.

``python -m tests.mqtt_box URL DB BOX_ID``; reads commands on stdin: ``record`` (store a
session with its outbox entry and tell the publisher), ``quit``. Prints ``connected``,
``handed N`` (sessions given to paho) and ``delivered N`` as they happen.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from device.addons.mqtt import Publisher, resolve
from device.core.config import Config, MqttSettings
from device.core.records import HoldRecord, SessionRecord
from device.store.sqlite import History

START = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


class Ev:
    """A bus event stand-in: ``kind`` and ``to_json()``."""

    def __init__(self, kind: str, **data: Any) -> None:
        self.kind = kind
        self.data = {"t": 0.0, "kind": kind, **data}

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


def session(i: int, outcome: str = "complete") -> SessionRecord:
    """The i-th test session: one day apart, two 60 s holds."""
    started = START + timedelta(days=i)
    return SessionRecord(started, started + timedelta(seconds=150), outcome, "hamstring", (
        HoldRecord("right", 1, 60, 60, "complete", 3.1, 4.0, 82.0, "easy", 0.0),
        HoldRecord("left", 1, 60, 58.5, "early", 2.9, 3.8, 77.0, "tight", 1.2)))


IDLE = {"state": "idle", "leg": None, "round": 0, "rounds": 1, "hold_left_s": None,
        "hold_planned_s": None, "sensor_status": "absent"}


def main(url: str, db: str, box_id: str) -> None:
    store = History(db, outbox=True)
    ep = resolve(MqttSettings(url=url, box_id=box_id))
    pub = Publisher(ep, Config(), view=lambda: dict(IDLE), store=History(db),
                    wall=lambda: START + timedelta(days=30), backoff_s=(0.05, 0.2))

    def report() -> None:
        said = (False, -1)
        while True:
            now = (pub._connected, pub.delivered)
            if now != said:
                if now[0] and not said[0]:
                    print("connected", flush=True)
                if now[1] != said[1]:
                    print(f"delivered {now[1]}", flush=True)
                said = now
            time.sleep(0.01)

    pub.start()
    threading.Thread(target=report, daemon=True).start()
    n = store.count()
    for line in sys.stdin:
        word = line.strip()
        if word == "record":
            store.record(session(n))
            n += 1
            pub.handle(Ev("history", outcome="complete", saved=True))
            print(f"handed {len(pub._handed)}", flush=True)
        elif word == "quit":
            break
    pub.close(wait_s=2)


if __name__ == "__main__":
    main(*sys.argv[1:4])
