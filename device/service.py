"""Running the box as a service: signals, sd_notify (ready, status, watchdog, stopping).

The watchdog is pinged from the device loop itself, so a stalled loop stops the pings
and systemd restarts the box.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import threading
from collections.abc import Callable

from device.events import StateEvent
from device.loop import DeviceLoop
from device.notify import Notifier

log = logging.getLogger(__name__)


class Supervision:
    """The sd_notify add-on: the state line for ``systemctl status`` and the watchdog
    pinged from inside the loop (whose clock runs at real speed in the service)."""

    def __init__(self, loop: DeviceLoop, notifier: Notifier) -> None:
        self.notifier = notifier
        loop.bus.subscribe(self._on_state, ["state"], name="sd_notify")
        if notifier.watchdog_interval_s is not None:
            loop.add_ticker(notifier.watchdog_due_at, notifier.watchdog_if_due)

    def _on_state(self, event: StateEvent) -> None:
        leg = f" ({event.leg} leg)" if event.leg else ""
        self.notifier.status(f"{event.state}{leg}")

    def close(self) -> None:
        """Nothing to release (STOPPING is sent by ``run_service``)."""


def attach(loop: DeviceLoop, notifier: Notifier) -> Supervision:
    """The sd_notify add-on on ``loop``."""
    return Supervision(loop, notifier)


supervise = attach


def stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM, SIGINT and SIGHUP (the terminal closed) ask ``stop`` (only from the main
    thread, where Python allows it)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


def outputs_line(loop: DeviceLoop) -> str:
    """The light and the buzzer as their pins say now (after a stop: "light off, buzzer
    off"), for the log."""
    try:
        duty, on = loop.outputs()  # read back from the pins
    except Exception as exc:  # a pin already released: say so rather than fail the stop
        return f"outputs unknown ({exc})"
    light = "light off" if duty == 0 else f"light ON (duty {duty:.2f})"
    buzzer = "buzzer ON" if on else "buzzer off"
    return f"{light}, {buzzer}"


def run_service(loop: DeviceLoop, notifier: Notifier | None = None) -> int:
    """Run ``loop`` until a signal; 0 on a clean stop, 1 if the loop crashed."""
    notifier = notifier or Notifier()
    if sys.stderr is not None:
        faulthandler.enable()  # a watchdog abort leaves a Python traceback in the journal
    supervise(loop, notifier)
    stop_on_signals(loop.stop)
    notifier.ready(status="idle")
    try:
        loop.run()
        log.warning("stopped: %s", outputs_line(loop))  # the journal's proof of a safe stop
    except Exception:
        log.exception(
            "device loop failed in state %s (leg %s); outputs made safe, exiting for a restart",
            loop.state.value, loop.view().leg,
        )
        return 1
    finally:
        notifier.stopping()
    return 0
