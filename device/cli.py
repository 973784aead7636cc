"""The command line: ``stretch-companion run | sim | config``.

Imports stay inside the commands so ``--help`` is quick and a PC never loads a Pi
backend.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from device.errors import ConfigError, UsageError

log = logging.getLogger("stretch_companion")

SIM_KEYS = (  # the terminal simulator's keys, for `sim --help`
    ("space, enter", "press the button (start, skip the set-up, end a hold early, switch)"),
    ("l", "long press: cancel the session"),
    ("m", "mute or unmute the voice (the words stay on screen)"),
    ("+, -", "faster or slower clock: 1, 2, 5, 10, 30x"),
    ("up, down", "pull the strap harder or softer (with --sensor)"),
    ("b", "bounce on the strap (with --sensor)"),
    ("u", "unplug or plug the strap sensor back in (with --sensor)"),
    ("q, ctrl+c", "quit (a session in progress is kept as interrupted)"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stretch-companion",
        description="A box that coaches a hamstring stretch: button, breathing light, "
        "buzzer, voice and (optionally) a strap tension sensor.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the box on its real pins (a Raspberry Pi)")
    run.add_argument("--config", metavar="FILE", help="config file (TOML)")
    run.add_argument("--history", metavar="FILE", help="history database (SQLite)")

    sim = sub.add_parser(
        "sim", help="the box on a laptop: mock pins, in the terminal",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="keys on screen:\n" + "\n".join(f"  {k:14} {what}" for k, what in SIM_KEYS))
    sim.add_argument("--config", metavar="FILE", help="config file (TOML)")
    sim.add_argument("--headless", action="store_true",
                     help="no screen: run a scripted session and print what happens")
    sim.add_argument("--script", metavar="ITEMS",
                     help="timed inputs, e.g. 'press@1,press@95,long@200' (press, long); "
                     "without one a session starts at 1 s and switches legs by itself")
    sim.add_argument("--events", metavar="FILE",
                     help="write every event as JSON lines to FILE ('-' = stdout)")
    sim.add_argument("--speed", type=float, metavar="N",
                     help="N x real time (headless default: virtual time, as fast as it goes)")
    sim.add_argument("--until", type=float, metavar="SECONDS",
                     help="stop after this many simulated seconds")
    sim.add_argument("--voice", action="store_true",
                     help="headless: speak through pyttsx3 instead of a recording fake")
    sim.add_argument("--mute", action="store_true",
                     help="on screen: start with the voice and bell muted (m toggles)")
    sim.add_argument("--quiet", action="store_true",
                     help="headless: do not print the readable transcript")
    sim.add_argument("--sensor", action="store_true",
                     help="fit the simulated strap tension sensor (script: tension@S:KG, "
                     "bounce@S:SECONDS, unplug@S, replug@S)")
    sim.add_argument("--history", metavar="FILE",
                     help="history database (default: a simulator file of its own)")
    sim.add_argument("--no-history", action="store_true", help="keep no history")
    sim.add_argument("--start", metavar="ISO-TIME",
                     help="headless: the wall-clock time the run starts at, e.g. "
                     "2026-11-26T07:30:00+01:00 (default: now)")

    history = sub.add_parser("history", help="past sessions, streak, progress; export")
    from device.history_report import add_history_arguments

    add_history_arguments(history)

    cal = sub.add_parser("calibrate", help="calibrate the strap sensor with a known weight")
    cal.add_argument("--config", metavar="FILE", help="config file (TOML)")
    cal.add_argument("--kg", type=float, required=True, help="the known weight, in kg")
    cal.add_argument("--mock", action="store_true", help="on the simulated sensor")

    st = sub.add_parser("selftest", help="try each part once (light, buzzer, button, voice, "
                        "strap sensor) and say how to fix what fails")
    st.add_argument("--config", metavar="FILE", help="config file (TOML)")
    st.add_argument("--mock", action="store_true",
                    help="mock pins, virtual time, fake voice and sensor (any PC)")

    config = sub.add_parser("config", help="show or check the configuration")
    config.add_argument("--default", action="store_true", help="print a commented default file")
    config.add_argument("--check", metavar="FILE", help="validate FILE and say so")
    return parser


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def cmd_config(args: argparse.Namespace) -> int:
    """``config --default`` / ``config --check FILE``."""
    from device.config import default_config_text, load_config

    if args.check:
        from device.routine import load_routine

        config = load_config(args.check)
        load_routine(config.routine.file or None)
        print(f"{args.check}: ok")
        return 0
    sys.stdout.write(default_config_text())
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    """The simulator: headless (scripted) or on screen."""
    from device import lean

    lean.lazy_metadata()
    if not args.headless:
        lean.without_tls()  # the screen talks no TLS: OpenSSL stays out (4 MiB)
    from device.config import load_config
    from device.routine import load_routine

    config = load_config(args.config)
    load_routine(config.routine.file or None)  # a bad routine file stops here, not mid-run
    if args.speed is not None and not 0.1 <= args.speed <= 1000:  # NaN fails too
        raise UsageError(f"--speed {args.speed:g}: must be from 0.1 to 1000")
    if args.until is not None and not 0 < args.until <= 7 * 24 * 3600:
        raise UsageError(f"--until {args.until:g}: must be a number of seconds from 0 to "
                          "604800 (a week)")
    if not args.headless:
        from device.habit import history_path
        from device.tui import run_tui

        history = None if args.no_history else history_path(config, args.history, True)
        return run_tui(config, speed=args.speed or 1.0, mute=args.mute, sensor=args.sensor,
                       history=history)
    return _headless(args, config)


def _headless(args: argparse.Namespace, config: object) -> int:
    from device.sim import run_headless
    from device.transcript import JsonLines, Readable

    listeners = []
    out = None
    if args.events == "-":
        listeners.append(JsonLines(sys.stdout))
    elif args.events:
        # line-buffered in real time, so a watcher sees each event as it happens
        try:
            out = open(args.events, "w", encoding="utf-8",  # noqa: SIM115
                       buffering=1 if args.speed else -1)
        except OSError as exc:
            raise UsageError(f"--events {args.events}: cannot write it ({exc.strerror})"
                              ) from None
        listeners.append(JsonLines(out))
    if not args.quiet and args.events != "-":
        listeners.append(Readable(sys.stdout))
    try:
        history = None
        if not args.no_history:
            from device.habit import history_path

            history = history_path(config, args.history, simulator=True)
        start = None
        if args.start:
            from datetime import datetime

            try:
                start = datetime.fromisoformat(args.start)
            except ValueError:
                raise UsageError(f"--start {args.start!r}: must be an ISO time such as "
                                  "2026-11-26T07:30:00+01:00") from None
            if start.tzinfo is None:
                start = start.astimezone()
        run_headless(config, args.script, listeners, speed=args.speed, until=args.until,
                     voice=args.voice, handle_signals=True, history=history, start=start,
                     sensor=args.sensor)
    finally:
        if out is not None:
            out.close()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The box on real pins, until SIGTERM or Ctrl-C."""
    from device import lean

    lean.lazy_metadata()
    from device.builder import build_box
    from device.clock import RealClock
    from device.config import load_config
    from device.habit import history_path
    from device.service import run_service
    from drivers.pins import PinFactoryError

    config = load_config(args.config)
    try:
        box = build_box(config, mode="run", clock=RealClock(),
                        history=history_path(config, args.history, simulator=False))
    except PinFactoryError as exc:
        print(f"stretch-companion: {exc}", file=sys.stderr)
        return 1
    try:
        return run_service(box.loop)
    finally:
        box.close()


def cmd_selftest(args: argparse.Namespace) -> int:
    """``selftest``: each part once, pass/fail and the fix."""
    from device.config import load_config
    from device.selftest import selftest_main

    return selftest_main(load_config(args.config), args.mock)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``calibrate --kg X``: tare, then a known weight."""
    from device.calibrate import calibrate_main
    from device.config import load_config

    return calibrate_main(load_config(args.config), args.kg, mock=args.mock)


def cmd_history(args: argparse.Namespace) -> int:
    """``history``: a table, JSON, CSV or a plot of past sessions."""
    from device.history_report import history_main

    return history_main(args)


COMMANDS = {
    "run": cmd_run, "sim": cmd_sim, "config": cmd_config, "history": cmd_history,
    "calibrate": cmd_calibrate, "selftest": cmd_selftest,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stretch-companion`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    _logging(args.verbose)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"stretch-companion: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. `| head`: the reader left; nothing more to say
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
