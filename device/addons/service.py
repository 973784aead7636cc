"""Running the box as a service: signals, sd_notify (ready, status, watchdog, stopping).

The watchdog is pinged from the device loop itself, so a stalled loop stops the pings
and systemd restarts the box.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from device.addons.notify import Notifier
from device.box.events import StateEvent
from device.box.loop import DeviceLoop

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



_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_stop_target: list[Callable[[], None]] = []  # what the next signal stops (the newest run)
_watcher: list[int] = []  # the wake-up pipe's write end, once it exists


def _watch_signals(read_fd: int) -> None:
    """The signal thread: each signal number written to the wake-up pipe stops the box."""
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = str(signum)
            log.info("signal %s: stopping", name)
            if _stop_target:
                _stop_target[-1]()


def _noted(signum: int, frame: object) -> None:
    """The Python-level handler does nothing: the wake-up pipe carries the signal."""


def stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM, SIGINT and SIGHUP (the terminal closed) ask ``stop`` (only from the main
    thread, where Python allows it).

    ``stop`` runs in a thread of its own, fed by ``signal.set_wakeup_fd``, never inside
    the handler: a handler runs on the main thread between any two bytecodes, and taking
    a lock there (setting an Event) deadlocks if the main thread held that very lock when
    the signal landed."""
    if threading.current_thread() is not threading.main_thread():
        return
    _stop_target[:] = [stop]
    if not _watcher:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        threading.Thread(target=_watch_signals, args=(read_fd,), name="signals",
                         daemon=True).start()
        _watcher.append(write_fd)
    signal.set_wakeup_fd(_watcher[0], warn_on_full_buffer=False)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _noted)


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
    attach(loop, notifier)
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
