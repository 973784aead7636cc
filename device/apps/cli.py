"""The command line: ``stretch-companion run | sim | config | press | long | status ...``.

Imports stay inside the commands so ``--help`` is quick and a PC never loads a Pi
backend.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.core.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from device.box.loop import Listener
    from device.core.config import Config

log = logging.getLogger("stretch_companion")

SIM_KEYS = (  # the terminal simulator's keys, for `sim --help`
    ("space, enter", "press the button (start, skip the set-up, end a hold early, switch)"),
    ("l", "long press: cancel the session"),
    ("h", "a double press: in the set-up, straight to the hold (at any speed)"),
    ("m", "mute or unmute the voice (the words stay on screen)"),
    ("+, -", "faster or slower clock: 1, 2, 5, 10, 30x"),
    ("up, down", "pull the strap harder or softer (with --sensor)"),
    ("b", "bounce on the strap (with --sensor)"),
    ("u", "unplug or plug the strap sensor back in (with --sensor)"),
    ("q, ctrl+c", "quit (a session in progress is kept as interrupted)"),
)


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``command`` (the subcommand given) the options of the
    history and studio commands, whose modules ``run`` does not need, are added only
    for those commands (issue 23: ``run`` imports only what it uses)."""
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
    run.add_argument("--mqtt", metavar="URL", help="publish to this MQTT broker "
                     "(mqtt://host:1883, mqtts://host:8883); overrides mqtt.url")
    run.add_argument("--socket", metavar="PATH",
                     help="listen for press, long and status on this control socket "
                     "(overrides control.socket; under systemd it is there by itself)")

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
    sim.add_argument("--mqtt", metavar="URL", help="publish to this MQTT broker "
                     "(mqtt://127.0.0.1:1883); overrides mqtt.url")
    sim.add_argument("--web", metavar="HOST:PORT",
                     help="serve the phone page there, e.g. 127.0.0.1:8321 (needs the web "
                     "extra; headless: with --speed)")
    sim.add_argument("--start", metavar="ISO-TIME",
                     help="headless: the wall-clock time the run starts at, e.g. "
                     "2026-11-26T07:30:00+01:00 (default: now)")

    history = sub.add_parser("history", help="past sessions, streak, progress; export")
    if command in (None, "history"):
        # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
        from device.apps.history_report import add_history_arguments

        add_history_arguments(history)

    studio = sub.add_parser("studio", help="every box's sessions and stats, from an MQTT "
                            "broker (a studio or a household with several boxes)")
    if command in (None, "studio"):
        # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
        from device.apps.studio import add_studio_arguments

        add_studio_arguments(studio)

    cal = sub.add_parser("calibrate", help="calibrate the strap sensor with a known weight")
    cal.add_argument("--config", metavar="FILE", help="config file (TOML)")
    cal.add_argument("--kg", type=float, required=True, help="the known weight, in kg")
    cal.add_argument("--mock", action="store_true", help="on the simulated sensor")

    st = sub.add_parser("selftest", help="try each part once (light, buzzer, button, voice, "
                        "strap sensor) and say how to fix what fails")
    st.add_argument("--config", metavar="FILE", help="config file (TOML)")
    st.add_argument("--mock", action="store_true",
                    help="mock pins, virtual time, fake voice and sensor (any PC)")

    for name, text in (("press", "press the running box's button (over its control socket)"),
                       ("long", "long-press the running box's button: cancels a session"),
                       ("status", "print the running box's state as JSON"),
                       ("pair", "the running box says a fresh code for the phone page aloud "
                        "(and lifts pairing lockouts)")):
        ctl = sub.add_parser(name, help=text)
        ctl.add_argument("--socket", metavar="PATH",
                         help="control socket (default: $RUNTIME_DIRECTORY/control.sock, "
                         "else /run/stretch-companion/control.sock)")
    for name, text in (("web-code", "print the code that pairs a phone with the page"),
                       ("web-forget", "revoke every paired phone (a new code is made)")):
        web = sub.add_parser(name, help=text)
        web.add_argument("--sim", action="store_true", help="the simulator's pairings")
        web.add_argument("--state-dir", metavar="DIR",
                         help="where the pairings are kept (default: the state directory)")

    config = sub.add_parser(
        "config", help="print the configuration in effect (--default, --check FILE)",
        description="Print the configuration in effect: --config FILE, else the first of "
        "$XDG_CONFIG_HOME/stretch-companion/config.toml and "
        "/etc/stretch-companion/config.toml that exists, else the built-in defaults.")
    config.add_argument("--config", metavar="FILE", help="config file (TOML) to read")
    config.add_argument("--default", action="store_true",
                        help="print a commented file with every key at its default")
    config.add_argument("--check", metavar="FILE",
                        help="validate FILE (and its routine file) and say so")
    return parser


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def cmd_config(args: argparse.Namespace) -> int:
    """``config``: the configuration in effect; ``--default``; ``--check FILE``."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.core.config import (
        config_source,
        default_config_text,
        effective_config_text,
        load_config,
    )
    from device.core.routine import load_routine

    if args.check:
        config = load_config(args.check)
        load_routine(config.routine.file or None)
        if config.mqtt.url:  # the files it names: readable, a private password file
            from device.addons.mqtt import resolve

            resolve(config.mqtt)
        print(f"{args.check}: ok")
        return 0
    if args.default:
        print(default_config_text(), end="")
        return 0
    config = load_config(args.config)
    load_routine(config.routine.file or None)
    print(effective_config_text(config, config_source(args.config)), end="")
    return 0


def _short(text: str, most: int = 60) -> str:
    """``text`` cut to ``most`` characters for a one-line message."""
    return text if len(text) <= most else text[: most - 3] + "..."


def _history_file(config: Any, override: str | None, simulator: bool) -> Path:
    """Where the history goes; a folder, FIFO or device there stops start-up in one line
    (a FIFO would block the store)."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.addons.habit import history_path

    path = history_path(config, override, simulator)
    try:
        exists = path.exists()
    except OSError as exc:  # a name too long, a folder on the way that is a file...
        where = f"--history {_short(override)}" if override else \
            f"history file {_short(str(path))!r}"
        error = UsageError if override else ConfigError
        raise error(f"{where}: cannot use it ({exc.strerror})") from None
    if exists and not path.is_file():
        if override:
            raise UsageError(f"--history {override}: not a regular file; must be a history "
                              "database file (SQLite)")
        raise ConfigError(f"history file {str(path)!r}: not a regular file; must be a "
                          "history database file (SQLite)")
    return path


def _sim_config(args: argparse.Namespace) -> Path | None:
    """The simulator's config: ``--config``, its own settings file (the page's saves),
    else the box's (read only)."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.addons.web.settings import sim_config_source

    return sim_config_source(args.config)


def cmd_sim(args: argparse.Namespace) -> int:
    """The simulator: headless (scripted) or on screen."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.apps import lean

    lean.lazy_metadata()
    # the sim's own config (device.addons.web.settings) loads hashlib: on its built-in
    # hashes, so that OpenSSL can still be kept out below
    lean.builtin_hashes()
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.core.config import load_config
    from device.core.routine import load_routine

    config = load_config(_sim_config(args))
    mqtt_wanted = bool(args.mqtt or config.mqtt.url)
    if not args.headless and args.web is None and not mqtt_wanted:
        lean.without_tls()  # the screen alone talks no TLS: OpenSSL stays out (4 MiB)
    load_routine(config.routine.file or None)  # a bad routine file stops here, not mid-run
    if args.speed is not None and not 0.1 <= args.speed <= 1000:  # NaN fails too
        raise UsageError(f"--speed {args.speed:g}: must be from 0.1 to 1000")
    if args.until is not None and not 0 < args.until <= 7 * 24 * 3600:
        raise UsageError(f"--until {args.until:g}: must be a number of seconds from 0 to "
                          "604800 (a week)")
    if args.web is not None:
        # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
        from device.addons.web import parse_listen

        try:
            parse_listen(args.web)
        except ConfigError:
            raise UsageError(f"--web {args.web!r}: must be HOST:PORT, e.g. 127.0.0.1:8321"
                             ) from None
        if args.headless and not args.speed:
            raise UsageError("--web needs real time: add --speed 1 (or leave out --headless)")
    args.mqtt_endpoint = None
    if mqtt_wanted:  # device.addons.mqtt imports ssl: only when MQTT is on
        from device.addons.mqtt import endpoint

        args.mqtt_endpoint = endpoint(config, args.mqtt)
    if not args.headless:
        # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
        from device.apps.tui import run_tui

        history = None if args.no_history else _history_file(config, args.history, True)
        return run_tui(config, speed=args.speed or 1.0, mute=args.mute, sensor=args.sensor,
                       history=history, web=args.web, config_path=_config_file(args),
                       mqtt=args.mqtt_endpoint)
    return _headless(args, config)


START_YEARS = (1971, 9998)  # --start: any year whose sessions (and weeks) fit the calendar


def _start_time(text: str) -> datetime:
    """``--start``: an aware date-time within ``START_YEARS`` (UsageError otherwise)."""
    example = "2026-11-26T07:30:00+01:00"
    lo, hi = START_YEARS
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--start {text!r}: must be an ISO time such as {example}") from None
    try:
        if start.tzinfo is None:
            start = start.astimezone()
        start.astimezone(UTC)  # an offset may push year 1 or 9999 off the calendar
        if not lo <= start.year <= hi:
            raise ValueError(start.year)
    except (ValueError, OverflowError):
        raise UsageError(f"--start {text!r}: must be a time in the years {lo} to {hi}, "
                          f"such as {example}") from None
    return start


def _config_file(args: argparse.Namespace) -> Path:
    """The config file the phone page edits (only looked up when the page is on): the
    simulator's own unless ``--config`` names one, so trying never changes the box's."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.addons.web.settings import settings_path, sim_settings_path

    if args.command == "sim":
        return sim_settings_path(args.config)
    return settings_path(args.config, service=args.command == "run")


def _headless(args: argparse.Namespace, config: Config) -> int:
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.addons.transcript import JsonLines, Readable
    from device.apps.sim import run_headless
    from device.apps.streams import GuardedStream

    # everything that can be refused is checked before the run starts
    start = _start_time(args.start) if args.start else None
    if sys.stdout is None and (args.events == "-" or not args.quiet):
        what = "--events -" if args.events == "-" else "the transcript"
        raise UsageError(f"{what}: standard output is closed; give --events FILE "
                          "(and --quiet)")
    history = None
    if not args.no_history:
        history = _history_file(config, args.history, simulator=True)
    listeners: list[Listener] = []
    streams: list[GuardedStream] = []
    if args.events == "-":
        streams.append(GuardedStream(sys.stdout, "--events -", pass_broken_pipe=True))
        listeners.append(JsonLines(streams[-1]))
    elif args.events:
        # line-buffered in real time, so a watcher sees each event as it happens
        try:
            out = open(args.events, "w", encoding="utf-8",  # noqa: SIM115
                       buffering=1 if args.speed else -1)
        except OSError as exc:
            raise UsageError(f"--events {args.events}: cannot write it ({exc.strerror})"
                              ) from None
        streams.append(GuardedStream(out, f"--events {args.events}"))
        listeners.append(JsonLines(streams[-1]))
    if not args.quiet and args.events != "-":
        streams.append(GuardedStream(sys.stdout, "standard output", pass_broken_pipe=True))
        listeners.append(Readable(streams[-1]))
    try:
        run_headless(config, args.script, listeners, speed=args.speed, until=args.until,
                     voice=args.voice, handle_signals=True, history=history, start=start,
                     sensor=args.sensor, web=args.web, config_path=_config_file(args),
                     mqtt=args.mqtt_endpoint)
    finally:
        for stream in streams:
            if stream.stream is not sys.stdout:
                stream.close()
            else:
                stream.flush()
    failed = [s for s in streams if s.error is not None]
    for stream in failed:
        print(f"stretch-companion: {stream.problem()}", file=sys.stderr)
    if any(s.failed_at_start for s in failed):
        return UsageError.exit_code
    return 1 if failed else 0


def _with_socket(config: Any, socket_path: str | None) -> Any:
    """``run --socket PATH``: the control socket there (checked like control.socket)."""
    if not socket_path:
        return config
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.core.config import with_overrides

    try:
        return with_overrides(config, control={"socket": socket_path, "enabled": True})
    except ConfigError as exc:
        raise UsageError(f"--socket {socket_path!r}: {exc}") from None


def _wants_tls(url: str) -> bool:
    """True unless the MQTT URL is empty or plain ``mqtt://`` (a URL that is neither is
    refused later, in one line, by ``endpoint``)."""
    return bool(url) and not url.strip().lower().startswith("mqtt://")


def cmd_run(args: argparse.Namespace) -> int:
    """The box on real pins, until SIGTERM or Ctrl-C."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.apps import lean
    from device.core.config import load_config

    lean.lazy_metadata()
    lean.uvicorn_without_cli()  # the page's server without uvicorn's command line
    config = _with_socket(load_config(args.config), args.socket)
    if not _wants_tls(args.mqtt or config.mqtt.url):
        # plain mqtt:// (or none) and the page over HTTP: no OpenSSL at all (4 MB)
        lean.without_tls()
        lean.imports_without_tls()
    lean.builtin_hashes()  # mqtts://: SHA-256 without OpenSSL's _hashlib (0.5 MB)
    # only now: gpiozero (through the builder) must find the stand-ins above
    from device.addons.mqtt import endpoint
    from device.apps.builder import build_box
    from device.apps.runner import run_service
    from device.box.clock import RealClock
    from device.box.timesource import SystemTimeSource
    from device.core.timetrust import TimeTrust
    from drivers.pins import PinFactoryError

    mqtt = endpoint(config, args.mqtt)
    history = _history_file(config, args.history, simulator=False)
    try:
        box = build_box(config, mode="run", clock=RealClock(), history=history,
                        config_path=_config_file(args), mqtt=mqtt,
                        trust=TimeTrust(SystemTimeSource()))
    except PinFactoryError as exc:
        print(f"stretch-companion: {exc}", file=sys.stderr)
        return 1
    from gpiozero.pins.mock import MockFactory

    if isinstance(box.factory, MockFactory):  # pins.factory or GPIOZERO_PIN_FACTORY = mock
        print("stretch-companion: running the box on mock pins: nothing is wired, so no light "
              "or buzzer (try `stretch-companion sim` to see the box on screen); "
              "stop with Ctrl-C", file=sys.stderr, flush=True)
    try:
        return run_service(box.loop, box.notifier)
    finally:
        box.close()


def cmd_selftest(args: argparse.Namespace) -> int:
    """``selftest``: each part once, pass/fail and the fix."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.apps.selftest import selftest_main
    from device.core.config import load_config

    return selftest_main(load_config(args.config), args.mock)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``calibrate --kg X``: tare, then a known weight."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.apps.calibrate import calibrate_main
    from device.core.config import load_config

    return calibrate_main(load_config(args.config), args.kg, mock=args.mock)


def cmd_web_code(args: argparse.Namespace) -> int:
    """``web-code``: the pairing code, as the box says it."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.addons.web import web_code_main

    return web_code_main(args.sim, Path(args.state_dir) if args.state_dir else None)


def cmd_web_forget(args: argparse.Namespace) -> int:
    """``web-forget``: every paired phone must pair again."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.addons.web import web_forget_main

    return web_forget_main(args.sim, Path(args.state_dir) if args.state_dir else None)


def cmd_history(args: argparse.Namespace) -> int:
    """``history``: a table, JSON, CSV or a plot of past sessions."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.apps.history_report import history_main

    return history_main(args)


def cmd_studio(args: argparse.Namespace) -> int:
    """``studio``: the boxes seen through the broker."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.apps.studio import studio_main

    return studio_main(args)


def cmd_control(args: argparse.Namespace) -> int:
    """``press``, ``long``, ``status``, ``pair``: one request to the running box's control
    socket."""
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.addons.control import ControlError, default_socket_path, request

    path = args.socket or default_socket_path()
    try:
        answer = request(path, args.command)
    except ControlError as exc:
        print(f"stretch-companion: {exc}", file=sys.stderr)
        return 1
    if answer.startswith("error:"):
        print(f"stretch-companion: {answer}", file=sys.stderr)
        return 1
    print(answer)
    return 0


COMMANDS = {
    "run": cmd_run, "sim": cmd_sim, "config": cmd_config, "history": cmd_history,
    "calibrate": cmd_calibrate, "selftest": cmd_selftest, "studio": cmd_studio,
    "press": cmd_control, "long": cmd_control, "status": cmd_control, "pair": cmd_control,
    "web-code": cmd_web_code, "web-forget": cmd_web_forget,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stretch-companion`` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, surrogate-escaped by Python
            print(f"stretch-companion: the argument {arg!r} is not UTF-8 text: give names "
                  "and values in UTF-8 (rename the file if it is a path)", file=sys.stderr)
            return UsageError.exit_code
    given = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(given if given in COMMANDS else None)
    args = parser.parse_args(argv)
    _logging(args.verbose)
    if not args.command:
        parser.print_help()
        return 0
    # deferred: a command loads only its own modules (a quick --help; run's start-up and RSS)
    from device.apps.streams import StreamUnwritable

    if sys.stdout is None and args.command != "sim":  # started with >&-: nobody to tell
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a full disk or /dev/full says so here, not at exit
        return code
    except StreamUnwritable as exc:  # --events or the transcript: not writable at all
        print(f"stretch-companion: {exc.message}", file=sys.stderr)
        return UsageError.exit_code
    except ConfigError as exc:
        print(f"stretch-companion: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. `| head`: the reader left; nothing more to say
        _silence_stdout()
        return 0
    except OSError as exc:
        if exc.filename is not None or exc.errno not in OUTPUT_ERRORS:
            raise
        # writing the output failed (stdout on a full disk, /dev/full, a dead terminal)
        _silence_stdout()
        print(f"stretch-companion: cannot write the output ({exc.strerror})", file=sys.stderr)
        return 74  # EX_IOERR


OUTPUT_ERRORS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EBADF})


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's flush at exit has nothing more to fail on."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
