"""Where the time goes: ``python -m bench.profile virtual|hold [--seconds S] [--html FILE]``.

Runs one benchmark's workload under pyinstrument (``pip install pyinstrument``; not a
dependency of the box) and prints the call tree:

* ``virtual``: the whole virtual-time session of the ``virtual`` benchmark (JSON lines to
  /dev/null), three times over so the samples are plenty;
* ``hold``: the real-time device loop breathing through a hold of ``--seconds`` (default
  20), profiled in the loop's own thread. pyinstrument samples wall time: the loop's
  waits show up as ``wait_until``; what is left is the CPU per frame.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any


def _profiler(interval: float) -> Any:
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("python -m bench.profile needs pyinstrument: "
                         "pip install pyinstrument") from None
    return Profiler(interval=interval)


def profile_virtual(repeat: int = 3) -> Any:
    from device.addons.transcript import JsonLines
    from device.apps.sim import make_sim
    from device.box.clock import VirtualClock
    from device.core.config import Config, with_overrides
    from device.core.script import Action

    config = with_overrides(Config(), session={"hold_seconds": 300, "rounds": 2,
                                               "switch": "auto"})
    profiler = _profiler(0.0002)
    with open(os.devnull, "w") as sink:
        profiler.start()
        for _ in range(repeat):
            box = make_sim(config, clock=VirtualClock(), listeners=[JsonLines(sink)])
            box.add_script([Action("press", 1.0)])
            box.loop.run(until=6 * 3600, stop_when_done=True)
            box.close()
        profiler.stop()
    return profiler


def profile_hold(seconds: float) -> Any:
    from bench.workers import _config_one_hold
    from device.apps.sim import make_sim
    from device.box.clock import RealClock
    from device.core.script import Action

    config = _config_one_hold(max(60.0, seconds + 5))
    box = make_sim(config, clock=RealClock(), listeners=[])
    box.add_script([Action("press", 0.05), Action("press", 0.3)])
    profiler = _profiler(0.0001)

    def run() -> None:
        profiler.start()  # pyinstrument profiles the thread that starts it
        try:
            box.loop.run(until=seconds)
        finally:
            profiler.stop()

    thread = threading.Thread(target=run, name="loop")
    thread.start()
    thread.join()
    box.close()
    return profiler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("what", choices=("virtual", "hold"))
    parser.add_argument("--seconds", type=float, default=20.0, help="hold: seconds to run")
    parser.add_argument("--html", metavar="FILE", help="also write pyinstrument's HTML here")
    args = parser.parse_args(argv)
    profiler = profile_virtual() if args.what == "virtual" else profile_hold(args.seconds)
    from pyinstrument.renderers import ConsoleRenderer

    # a real-time hold is >99% waiting: keep the small frames, where the CPU goes
    threshold = 0.01 if args.what == "virtual" else 0.00005
    renderer = ConsoleRenderer(unicode=True, color=False,
                               processor_options={"filter_threshold": threshold})
    print(renderer.render(profiler.last_session))
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(profiler.output_html())
    return 0


if __name__ == "__main__":
    sys.exit(main())
