"""Running a built box as a service: until a signal, READY=1 first, STOPPING=1 last."""

from __future__ import annotations

import faulthandler
import logging
import sys

from device.addons.notify import Notifier
from device.addons.service import stop_on_signals
from device.box.loop import DeviceLoop

log = logging.getLogger(__name__)


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
    """Run ``loop`` until a signal; 0 on a clean stop, 1 if the loop crashed. The builder
    attached the sd_notify add-on (state line, watchdog) with the same ``notifier``."""
    notifier = notifier or Notifier()
    if sys.stderr is not None:
        faulthandler.enable()  # a watchdog abort leaves a Python traceback in the journal
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
