"""The hold log: each hold that ends, one CSV row appended to a file (``history.hold_log``).

The README's example of an add-on: one module, one line in the builder. It hears the box
only through the port, as a queued subscriber (the file is written in a thread of its own,
so a slow disk never stalls the light or a cue), and a file that cannot be written costs a
log line, never the session.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from device.box.bus import Subscription
from device.box.events import HoldEvent
from device.box.port import BoxPort

log = logging.getLogger(__name__)

COLUMNS = ("t", "leg", "round", "planned_s", "held_s", "ended")


class HoldLog:
    """Appends a row per hold to ``path`` (the header first, in a new file)."""

    def __init__(self, port: BoxPort, path: Path) -> None:
        self.port = port
        self.path = path
        self.rows = 0
        self.sub: Subscription = port.on(HoldEvent, self._write, queued=True, name="hold-log")

    def _write(self, hold: HoldEvent) -> None:
        try:
            new = not self.path.exists() or self.path.stat().st_size == 0
            with self.path.open("a", encoding="utf-8", newline="") as out:
                w = csv.writer(out, lineterminator="\n")
                if new:
                    w.writerow(COLUMNS)
                w.writerow([hold.t, hold.leg, hold.round, hold.planned_s, hold.held_s,
                            hold.ended])
            self.rows += 1
        except OSError as exc:
            log.warning("hold log %s: %s (the hold is still in the history)", self.path,
                        exc.strerror or exc)

    def close(self) -> None:
        """Write what is queued, then stop."""
        self.port.unsubscribe(self.sub)


def attach(port: BoxPort, path: str | Path) -> HoldLog:
    """Log every hold of the box on ``port`` to the CSV file ``path``."""
    return HoldLog(port, Path(path))
