"""The service add-on: sd_notify's state line and watchdog, and stopping on signals.

The watchdog is pinged from the device loop itself (a ticker), so a stalled loop stops the
pings and systemd restarts the box. ``device/apps/runner.py`` runs the box as a service.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from device.addons.notify import Notifier
from device.box.events import StateEvent
from device.box.port import BoxPort

log = logging.getLogger(__name__)


class Supervision:
    """The sd_notify add-on: the state line for ``systemctl status`` and the watchdog
    pinged from inside the loop (whose clock runs at real speed in the service)."""

    def __init__(self, loop: BoxPort, notifier: Notifier) -> None:
        self.notifier = notifier
        loop.on(StateEvent, self._on_state, name="sd_notify")
        if notifier.watchdog_interval_s is not None:
            loop.add_ticker(notifier.watchdog_due_at, notifier.watchdog_if_due)

    def _on_state(self, event: StateEvent) -> None:
        leg = f" ({event.leg} leg)" if event.leg else ""
        self.notifier.status(f"{event.state}{leg}")

    def close(self) -> None:
        """Nothing to release (STOPPING is sent by ``run_service``)."""


def attach(loop: BoxPort, notifier: Notifier) -> Supervision:
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
