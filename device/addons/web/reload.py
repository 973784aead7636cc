"""A saved config reaches the box between sessions, never during one.

``ConfigReloader.request(config)`` (any thread) hands the config to the loop's thread;
there it is applied at once when the box is idle, else kept until the state next returns
to idle (an in-loop ``state`` subscriber, so nothing is missed and nothing is polled).

Applied: session settings (hold length, rounds, leg order, long press), the breath
pattern, the voice rate for timings, the idle light, habit's config (nudge time,
progression) and the strap's thresholds (its ceiling). The speaker itself is not rebuilt
here: a change of ``voice.enabled``, ``rate`` or ``volume`` reaches the spoken voice at
the next start of the service. It goes through the loop's, habit's and the strap's
``reload``.
"""

from __future__ import annotations

import logging
from typing import Any

from device.core.config import Config

log = logging.getLogger(__name__)


class ConfigReloader:
    """Applies saved configs to ``box`` when no session is in progress."""

    def __init__(self, box: Any) -> None:
        self.box = box
        self.pending: Config | None = None
        self.applied: list[Config] = []
        self.sub = box.bus.subscribe(self._on_state, ["state"], name="web-reload")

    def request(self, config: Config) -> None:
        """Use ``config`` from the next session on (safe from any thread)."""
        self.box.loop.call_soon(lambda: self._offer(config))

    def _offer(self, config: Config) -> None:
        if self.box.loop.state.value == "idle":
            self._apply(config)
        else:
            self.pending = config  # a later save replaces an earlier one

    def _on_state(self, event: Any) -> None:
        if self.pending is not None and event.state == "idle":
            config, self.pending = self.pending, None
            self._apply(config)

    def _apply(self, config: Config) -> None:
        box = self.box
        box.loop.reload(config)
        if box.habit is not None:
            box.habit.reload(config)
        sensor = getattr(box, "sensor", None)
        if sensor is not None:  # the strap ceiling and coaching thresholds
            sensor.reload(config.sensor)
        box.config = config
        self.applied.append(config)
        log.info("web: new settings in use from this session on")

    def close(self) -> None:
        """Stop listening."""
        self.box.bus.unsubscribe(self.sub)
