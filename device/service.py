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
from typing import Any

from device.loop import DeviceLoop
from device.notify import Notifier

log = logging.getLogger(__name__)


def supervise(loop: DeviceLoop, notifier: Notifier) -> None:
    """Report the loop's state to systemd and ping the watchdog from inside the loop
    (whose clock runs at real speed in the service)."""

    def on_event(event: dict[str, Any]) -> None:
        if event["kind"] == "state":
            leg = f" ({event['leg']} leg)" if event.get("leg") else ""
            notifier.status(f"{event['state']}{leg}")

    loop.listeners.append(on_event)
    if notifier.watchdog_interval_s is None:
        return
    loop.hooks_per_wake.append(notifier.watchdog_if_due)
    loop.add_deadline_hook(notifier.watchdog_due_at)


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
    except Exception:
        log.exception(
            "device loop failed in state %s (leg %s); outputs made safe, exiting for a restart",
            loop.machine.state.value, loop.machine.leg,
        )
        return 1
    finally:
        notifier.stopping()
    return 0
