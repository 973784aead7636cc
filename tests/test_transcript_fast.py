"""The cheaper JSON-lines writer (issue 23): light frames are written without the JSON
encoder, and every line is still the text the encoder would write."""

from __future__ import annotations

import io
import json
import math

from device.addons.transcript import JsonLines, encode
from device.apps.sim import make_sim
from device.box.clock import VirtualClock
from device.core.config import Config, with_overrides
from device.core.script import Action


def test_light_frame_lines_are_the_encoders_text() -> None:
    out = io.StringIO()
    lines = JsonLines(out)
    values = [0.0, 1.0, 0.1234, 1e-05, 0.5, 0, 1, 123.4567, 1e20, 2.5e-07,
              math.nan, math.inf, -math.inf, -0.0]
    for value in values:
        for t in (0.0, 12.3456, 1e-4, 3600.0001, 5, 1e16):
            for call in (lambda e: lines(e), lambda e: lines.led(e["t"], e["value"])):
                out.seek(0)
                out.truncate()
                event = {"t": t, "kind": "led", "value": value}
                call(event)
                assert out.getvalue() == encode(event) + "\n", event


def test_a_whole_session_writes_the_same_lines_as_the_encoder() -> None:
    config = with_overrides(Config(), session={"legs": ["right"], "switch": "auto"})
    fast, slow = io.StringIO(), io.StringIO()
    box = make_sim(config, clock=VirtualClock(),
                   listeners=[JsonLines(fast), lambda e: slow.write(json.dumps(
                       e, separators=(",", ":")) + "\n")])
    box.add_script([Action("press", 1.0)])
    box.loop.run(until=3600, stop_when_done=True)
    box.close()
    assert fast.getvalue() == slow.getvalue()
    assert fast.getvalue().count('"kind":"led"') > 500
