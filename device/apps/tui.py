"""``stretch-companion sim``: the whole box in a terminal, drawn with Textual.

The real device loop runs in a background thread on gpiozero mock pins and a real clock
(sped up on request). The screen reads the box as a person would see it: the light's
brightness comes from the mock PWM pin itself, the buzzer from its pin, the words from the
loop's record of what was said. Keys stand in for the button and, when a sensor is fitted,
for the strap. Events reach the screen through a bounded deque; nothing here grows with
time, so the simulator can run for hours.

The screen idles like the box: it has no frame timer. An event from the loop (a state, a
line said, a beep, a strap reading), a key or a resize wakes it; while the light moves it
redraws at ``LIGHT_FPS``; otherwise it sleeps until the next thing it shows can change (a
notice running out, a beep's flash). Each panel is redrawn only when what it shows changed.

Textual is an optional dependency (the ``sim`` extra): without it ``run_tui`` says how to
get it and returns 1, and the rest of this module still imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from device.apps.builder import Box, PinCommands, build_box, make_voice
from device.box.clock import RealClock
from device.box.events import Event
from device.box.loop import BoxView
from device.core.breath import perceived
from device.core.config import Config
from device.core.voice_status import screen_words
from drivers.speech import Speaker

try:
    from rich.color import Color, ColorSystem
    from rich.console import COLOR_SYSTEMS, Console
    from rich.segment import Segment
    from rich.style import Style
    from rich.text import Text
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.containers import Horizontal
    from textual.geometry import Region
    from textual.strip import Strip
    from textual.widget import Widget
    from textual.widgets import Static

    BOLD: Style | None = Style(bold=True)
    DIM: Style | None = Style(dim=True)
    HAVE_TEXTUAL = True
except ImportError:  # the `sim` extra is not installed: run_tui says so
    HAVE_TEXTUAL = False
    BOLD = DIM = None

    class App:  # type: ignore[no-redef]  # a stand-in, so the classes below still define
        def __class_getitem__(cls, item: Any) -> Any:
            return cls

    Static = Horizontal = Widget = object  # type: ignore[assignment,misc]

    def Binding(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]  # noqa: N802
        return None

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "stretch-companion: the terminal simulator needs Textual: "
    "pip install 'stretch-companion[sim]' (or use `stretch-companion sim --headless`)"
)
SPEEDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # what + and - step through
FPS = 25.0  # most screen refreshes per second (events coming faster are drawn together)
READOUT_HZ = 4.0  # the PWM readout's changes per second while the light moves (a meter's rate:
# three digits changing faster cannot be read; the glow keeps LIGHT_FPS, the last value is
# always drawn once the light stops)
LIGHT_FPS = 10.0  # refreshes per second while the light moves (a modest rate: the glow is
# a few character cells; the pin's exact duty is in the transcript)
EVENTS_KEPT = 64  # events waiting for the screen (a bounded hand-over from the loop thread)
CUES_SHOWN = 20  # spoken lines kept by the loop: as many are shown as the panel has room for
BUZZ_FLASH_S = 0.2  # a beep stays visible at least this long (ticks are 50 ms)
NOTICE_S = 4.0  # transient messages (no strap sensor, a key's effect) stay this long
WARNING_S = 10.0  # a logged warning stays on the title line this long (the panels keep the state)
LED_RGB = (255, 183, 64)  # the breathing light's colour at full duty (a warm amber LED)
GAUGE_MAX_KG = 10.0
NO_STRAP = "no strap sensor (start with --sensor)"
WATCHED_EVENTS = None  # every kind but the light frames: each may change what is shown
STATE_NAMES = {
    "idle": "idle",
    "setup": "set-up",
    "hold": "hold",
    "ask": "how tight?",
    "switch": "switch legs",
    "done": "done",
    "cancelled": "cancelled",
}
STATE_HINTS = {
    "idle": "press to start a session",
    "setup": "press: next step · double press (h): straight to the hold",
    "hold": "press to end the hold early",
    "ask": "press 1x easy · 2x tight · 3x very tight",
    "switch": "press to switch legs",
    "done": "well done",
    "cancelled": "press to go back to idle",
}
PHASE_NAMES = {"in": "breathe in", "full": "hold the breath in", "out": "breathe out",
               "empty": "rest"}
PHASE_ARROWS = {"in": "▲", "full": "■", "out": "▼", "empty": "·"}
KEY_HELP = "space/enter press · l long · m mute · +/- speed · ↑↓ b u strap · q quit"
KEY_HELP_SHORT = "space press · l long · m mute · +/- speed · ↑↓ b u strap · q quit"
STRAP_KEYS = " · ↑↓ b u strap"


def key_help(width: int, strap: bool) -> str:
    """The key line: shorter below 80 columns; the strap's keys only with a strap."""
    text = KEY_HELP_SHORT if width < 80 else KEY_HELP
    return text if strap else text.replace(STRAP_KEYS, "")
SHADES = " ░▒▓█"  # the glow's texture by perceived brightness (so a text capture shows it)


# ---- pieces that need no Textual ----------------------------------------------------------


def next_speed(current: float, step: int) -> float:
    """The next simulator speed up (``step`` > 0) or down through ``SPEEDS``.

    A speed off the list (``--speed 3``) moves to its neighbour on the list; at either end
    the speed stays where it is."""
    if step > 0:
        faster = [s for s in SPEEDS if s > current + 1e-9]
        return faster[0] if faster else current
    slower = [s for s in SPEEDS if s < current - 1e-9]
    return slower[-1] if slower else current


def format_duty(value: float) -> str:
    """The light's PWM duty as the screen shows it."""
    return f"{value:.3f}"


def format_left(seconds: float) -> str:
    """Time left in a hold as m:ss, rounded up (a hold 'has 0:01 left' until it ends)."""
    whole = max(0, math.ceil(seconds - 1e-6))
    return f"{whole // 60}:{whole % 60:02d}"


def _srgb_encode(linear: float) -> float:
    if linear <= 0.0031308:
        return 12.92 * linear
    return 1.055 * linear ** (1 / 2.4) - 0.055


def _srgb_decode(value: float) -> float:
    if value <= 0.04045:
        return value / 12.92
    return ((value + 0.055) / 1.055) ** 2.4


def led_rgb(duty: float) -> tuple[int, int, int]:
    """Screen colour of the LED at PWM ``duty``: its light output is linear in the duty,
    so scale the colour in linear light and encode it for the (sRGB) screen."""
    duty = min(1.0, max(0.0, duty))
    rgb = (round(255 * _srgb_encode(_srgb_decode(c / 255) * duty)) for c in LED_RGB)
    return tuple(rgb)  # type: ignore[return-value]


def glow_shown(duty: float, palette: str | None) -> tuple[str, tuple[int, int, int]] | None:
    """What the glow panel shows at PWM ``duty`` (0-1) on a terminal with ``palette`` (Rich's
    name for its colours: "truecolor", "256", "standard"; None: no colour): the shade
    character and the colour the terminal really draws; None while the light is off.

    A 256-colour terminal has about a dozen steps of the LED's amber, so the panel is
    redrawn once per step, not on every frame of the light."""
    if duty <= 0:
        return None
    shade = SHADES[max(1, min(4, math.ceil(perceived(duty) * 4 - 1e-9)))]
    rgb = led_rgb(duty)
    if palette is None:
        return shade, (0, 0, 0)  # no colour: only the shade shows
    system = COLOR_SYSTEMS.get(palette, ColorSystem.TRUECOLOR)
    if system != ColorSystem.TRUECOLOR:
        drawn = Color.from_rgb(*rgb).downgrade(system)
        triplet = drawn.get_truecolor()
        rgb = (triplet.red, triplet.green, triplet.blue)
    return shade, rgb


def bar(fraction: float, width: int) -> str:
    """A horizontal bar ``width`` cells wide, ``fraction`` full (eighths of a cell)."""
    width = max(0, width)
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part else ""
    return ("█" * full + partial).ljust(width, "░")[:width]


class SwitchableVoice:
    """The simulator's voice: the real one (or a fake) behind a mute switch.

    ``make`` builds the real voice; it runs in a thread of its own, so a slow speech engine
    never holds up the screen. While muted (or before the engine is up, or when it could
    not start) lines are dropped here: the screen still shows them."""

    def __init__(
        self,
        inner: Speaker | None = None,
        make: Callable[[], Speaker] | None = None,
        muted: bool = False,
    ) -> None:
        self._inner = inner
        self._make = make
        self.muted = muted
        self._forced: bool | None = None
        self.notice: str | None = None
        self.on_change: Callable[[], None] | None = None  # told when the voice is up or failed
        self._lock = threading.Lock()
        self._starting = False
        self._box_closed = False
        self._idle_hooks: list[Callable[[], None]] = []
        if inner is None and make is not None and not muted:
            self._start()

    @property
    def available(self) -> bool | None:
        """The real voice's (False once it gave up or could not start): the box's one
        voice status reads it."""
        if self._forced is not None:
            return self._forced
        if self.notice:
            return False
        inner = self._inner
        return True if inner is None else getattr(inner, "available", True)

    @available.setter
    def available(self, value: bool | None) -> None:
        """A value set here wins (a Speaker's ``available`` is settable)."""
        self._forced = value

    @property
    def last_line_ok(self) -> bool | None:
        """What happened to the real voice's last line (None: nothing said yet)."""
        return getattr(self._inner, "last_line_ok", None)

    @property
    def has_voice(self) -> bool:
        """True when a voice could speak (there is one or one can be made)."""
        return self._inner is not None or self._make is not None

    @property
    def status(self) -> str:
        """One word or two for the screen."""
        if self.notice:
            return "text only"
        if not self.has_voice:
            return "voice off (text only)"
        if self.muted:
            return "muted"
        if self._inner is None:
            return "voice starting"
        if not self._inner.available:
            return f"voice failed: {self.last_error or 'the speech engine did not start'}" \
                " (text only)"
        return "voice on"

    @property
    def last_error(self) -> str:
        """Why the voice is not speaking, when it failed ("" otherwise)."""
        inner = self._inner
        return str(getattr(inner, "last_error", "") or "") if inner is not None else ""

    def _start(self) -> None:
        with self._lock:
            if self._starting or self._inner is not None or self._make is None:
                return
            self._starting = True
        threading.Thread(target=self._build, name="voice-start", daemon=True).start()

    def _build(self) -> None:
        assert self._make is not None
        try:
            inner = self._make()
        except Exception as exc:  # any failure to make a voice means text only
            inner = None
            why = f"{type(exc).__name__}: {exc}"
        else:
            why = "no speech engine"
        with self._lock:
            self._starting = False
            if inner is None or not inner.available:
                self._make = None  # never try again: one notice, not one per unmute
                self.notice = f"voice unavailable ({why}): showing the words only"
                if inner is not None:
                    inner.close()
            elif self._box_closed:
                inner.close()
            else:
                self._inner = inner
                self._pass_idle_hooks(inner)
        if self.on_change is not None:
            self.on_change()

    @property
    def tells_idle(self) -> bool:
        """True when ``on_idle`` callbacks will come (the voice behind it sends them)."""
        return bool(getattr(self._inner, "tells_idle", False))

    def on_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the voice goes idle (the loop sleeps until then)."""
        self._idle_hooks.append(callback)
        if self._inner is not None:
            self._pass_idle_hooks(self._inner, [callback])

    def _pass_idle_hooks(self, inner: Speaker,
                         hooks: list[Callable[[], None]] | None = None) -> None:
        hook = getattr(inner, "on_idle", None)
        if hook is not None:
            for callback in self._idle_hooks if hooks is None else hooks:
                hook(callback)

    def set_muted(self, muted: bool) -> None:
        """Mute (drop lines) or unmute (and start the real voice if not yet done)."""
        self.muted = muted
        if not muted and self._inner is None:
            self._start()
        if muted:
            for callback in self._idle_hooks:
                callback()  # busy() is False from now on

    def say(self, text: str) -> None:
        """Say ``text`` unless muted or voiceless."""
        inner = self._inner
        if self.muted or inner is None:
            return
        inner.say(text)

    def busy(self) -> bool:
        """True while the real voice is talking (never while muted)."""
        inner = self._inner
        return not self.muted and inner is not None and inner.busy()

    def stop(self) -> None:
        """Cut off the line being said (a press moved on, or a more urgent line)."""
        inner = self._inner
        stop = getattr(inner, "stop", None)
        if stop is not None:
            stop()

    def close(self) -> None:
        """Stop the voice."""
        with self._lock:
            self._box_closed = True
            inner = self._inner
        if inner is not None:
            inner.close()


def real_voice(config: Config) -> Callable[[], Speaker] | None:
    """How to make the box's real voice for ``config``, exactly as ``run`` makes it
    (``voice.player``, ``voice.audio_device``, the WAV cue cache); None when
    ``voice.enabled`` is false."""
    if not config.voice.enabled:
        return None
    return lambda: make_voice(config)


class ScreenLog(logging.Handler):
    """Keeps the last few warnings for the screen (a log line on stderr would tear it)."""

    def __init__(self, keep: int = 3) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=keep)
        self.at: deque[float] = deque(maxlen=keep)  # time.monotonic() of each line
        self.on_line: Callable[[], None] | None = None  # told of each new line

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("drivers.speech"):
            return  # the voice's state is on screen already, once
        try:
            self.lines.append(record.getMessage())
            self.at.append(time.monotonic())
            if self.on_line is not None:
                self.on_line()
        except Exception:  # a bad log call must not break the screen
            pass

    def current(self, now: float) -> tuple[str, float] | None:
        """The latest line and until when it is shown (``WARNING_S`` after it came)."""
        if not self.lines or not self.at or now >= self.at[-1] + WARNING_S:
            return None
        return self.lines[-1], self.at[-1] + WARNING_S

    def forget(self) -> None:
        """Clear the lines (what they warned of is over, e.g. the strap is back)."""
        self.lines.clear()
        self.at.clear()


@contextlib.contextmanager
def _logs_on_screen(handler: ScreenLog) -> Iterator[None]:
    """While the screen is up, warnings go to ``handler`` instead of the terminal."""
    root = logging.getLogger()
    streams = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
               and not isinstance(h, logging.FileHandler)]
    for h in streams:
        root.removeHandler(h)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for h in streams:
            root.addHandler(h)


@contextlib.contextmanager
def _stray_output_hidden() -> Iterator[None]:
    """Keep what child processes and C libraries write to fd 2 (aplay, ALSA) off the screen.

    Textual draws on ``sys.__stderr__``: it gets its own copy of the terminal, and fd 2
    goes to /dev/null until the screen closes. Only where fd 2 is a terminal (POSIX)."""
    try:
        is_tty = os.name == "posix" and os.isatty(2) and sys.__stderr__ is not None
    except (OSError, ValueError):
        is_tty = False
    if not is_tty:
        yield
        return
    saved_stream = sys.__stderr__
    assert saved_stream is not None
    screen_fd = os.dup(2)
    screen = os.fdopen(screen_fd, "w", encoding=saved_stream.encoding or "utf-8",
                       errors="replace", buffering=1)
    sink = os.open(os.devnull, os.O_WRONLY)
    saved_stream.flush()
    os.dup2(sink, 2)
    os.close(sink)
    setattr(sys, "__stderr__", screen)  # noqa: B010 - a Final name in typeshed
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            screen.flush()
        os.dup2(screen_fd, 2)
        setattr(sys, "__stderr__", saved_stream)  # noqa: B010
        with contextlib.suppress(Exception):
            screen.close()


def run_tui(config: Config, speed: float = 1.0, mute: bool = False, sensor: bool = False,
            history: Path | None = None, web: str | None = None,
            config_path: Path | None = None, mqtt: Any = None) -> int:
    """The simulator on screen until ``q``; returns the exit code."""
    if not HAVE_TEXTUAL:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    screen_log = ScreenLog()
    with _logs_on_screen(screen_log), _stray_output_hidden():
        app = StretchApp(config, speed=speed, mute=mute, screen_log=screen_log, sensor=sensor,
                         history=history, web=web, config_path=config_path, mqtt=mqtt)
        restore = _quit_on_hang_up(app)
        try:
            app.run()
        finally:
            app.stop_box()
            restore()
    return app.return_code or 0


def _quit_on_hang_up(app: StretchApp) -> Callable[[], None]:
    """SIGHUP (the terminal closed) and SIGTERM quit like ``q``: the session is recorded
    as interrupted, light and buzzer off, exit 0. Returns what puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_signum: int, _frame: object) -> None:
        aio = getattr(app, "_aio", None)
        if aio is None or aio.is_closed():
            raise SystemExit(0)  # before the screen is up: run_tui's finally stops the box
        aio.call_soon_threadsafe(app.exit, 0)  # on_unmount stops the box

    old = {signum: signal.signal(signum, handler) for signum in (signal.SIGHUP, signal.SIGTERM)}

    def restore() -> None:
        for signum, previous in old.items():
            signal.signal(signum, previous)

    return restore


# ---- the screen ---------------------------------------------------------------------------


Row = tuple[tuple[str, "Style | None"], ...]  # a line as (text, Rich style) pieces


class KeptLines(Widget):
    """A panel drawn from the rows it keeps: each a line of (text, style) pieces, turned into
    a Textual strip once and kept. New rows repaint only the lines that changed and skip
    Textual's content pipeline (the light's panel changes up to ``LIGHT_FPS`` times a
    second); rows longer than the panel are cut, shorter ones padded."""

    DEFAULT_CSS = "KeptLines { height: 1; }"

    def __init__(self, *, id: str) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self.rows: tuple[Row, ...] = ()
        self.redrawn: Counter[int] = Counter()  # row -> times it changed (tests read it)
        self._strips: dict[int, Strip] = {}  # row -> its line, at ``_strips_width`` cells
        self._strips_width = 0

    def show(self, rows: tuple[Row, ...]) -> None:
        """Show ``rows`` (one per line); only the lines that differ are repainted."""
        old = self.rows
        if rows == old:
            return
        self.rows = rows
        width = self.size.width
        changed = [y for y in range(max(len(rows), len(old)))
                   if y >= len(rows) or y >= len(old) or rows[y] != old[y]]
        for y in changed:
            self.redrawn[y] += 1
            self._strips.pop(y, None)
        self.refresh(*(Region(0, y, width, 1) for y in changed))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width != self._strips_width:  # a new size: every kept line is the wrong length
            self._strips.clear()
            self._strips_width = width
        strip = self._strips.get(y)
        if strip is None:
            base = self.rich_style
            row = self.rows[y] if y < len(self.rows) else ()
            strip = Strip([Segment(text, base + style if style is not None else base)
                           for text, style in row if text]).adjust_cell_length(width, base)
            self._strips[y] = strip
        return strip


class StretchApp(App[int]):
    """The box in the terminal: light, buzzer, voice, state, strap, and keys for the button.

    Pass ``box`` (e.g. on a hand-driven clock, with a recording voice) to drive it from
    tests; otherwise a box is built on mock pins with a ``RealClock(speed)``."""

    TITLE = "Stretch Companion"
    CSS = """
    Screen { layout: vertical; overflow: hidden; }
    #title { height: 1; background: $primary-darken-2; color: $text; padding: 0 1; }
    #web { height: 1; background: $boost; padding: 0 1; }
    #state { height: auto; border: round $secondary; padding: 0 1; }
    #middle { height: auto; }
    #light { width: 1fr; height: 5; border: round $secondary; }
    #buzzer { width: 1fr; height: 4; border: round $secondary; padding: 0 1; }
    #buzzer.sounding { background: $warning 40%; }
    #tension { height: auto; border: round $secondary; padding: 0 1; }
    #voice { height: 1fr; border: round $secondary; padding: 0 1; }
    #help { dock: bottom; height: auto; background: $panel; padding: 0 1; }
    Screen.compact #state, Screen.compact #light, Screen.compact #buzzer,
    Screen.compact #tension, Screen.compact #voice { border: none; padding: 0; }
    Screen.compact #light { height: 2; }
    Screen.compact #buzzer { height: 2; padding: 0 1; }
    Screen.compact #title { padding: 0; }
    """
    BINDINGS = [
        Binding("space,enter", "press", "press", priority=True),
        Binding("l", "long_press", "long press"),
        Binding("h", "double_press", "to the hold"),
        Binding("m", "mute", "mute"),
        Binding("plus,equals_sign", "speed(1)", "faster"),
        Binding("minus,underscore", "speed(-1)", "slower"),
        Binding("up", "strap('harder')", "strap harder", priority=True),
        Binding("down", "strap('softer')", "strap softer", priority=True),
        Binding("b", "strap('bounce')", "bounce"),
        Binding("u", "strap('toggle_plug')", "plug"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def get_driver_class(self) -> Any:
        """Textual's terminal driver, with an input thread that sleeps until a key comes
        (``device/apps/quiet_driver.py``) where Textual would use its ``LinuxDriver``."""
        driver = super().get_driver_class()
        from textual.drivers.linux_driver import LinuxDriver

        if driver is LinuxDriver:
            # deferred: only when the screen (Textual) or the page (web extra) is used
            from device.apps.quiet_driver import QuietLinuxDriver

            return QuietLinuxDriver
        return driver

    def __init__(
        self,
        config: Config,
        speed: float = 1.0,
        mute: bool = False,
        box: Box | None = None,
        speaker: Speaker | None = None,
        screen_log: ScreenLog | None = None,
        fps: float = FPS,
        sensor: bool = False,
        history: Path | None = None,
        web: str | None = None,
        config_path: Path | None = None,
        mqtt: Any = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.fps = fps
        self.screen_log = screen_log
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        if box is not None:  # built by the caller (tests): its voice is whatever it was given
            if isinstance(box.speaker, SwitchableVoice):
                self.voice = box.speaker
            else:
                self.voice = SwitchableVoice(inner=box.speaker, muted=mute)
                self.voice.muted = False  # shown only: the box speaks through its own voice
        else:
            if speaker is not None:
                self.voice = SwitchableVoice(inner=speaker, muted=mute)
            else:
                self.voice = SwitchableVoice(make=real_voice(config), muted=mute)
            box = build_box(config, mode="sim", clock=RealClock(speed), speaker=self.voice,
                            sensor=sensor or config.sensor.enabled, history=history,
                            wall_start=None, web=web,  # stored ending now, as headless
                            config_path=config_path, mqtt=mqtt)
        box.bus.subscribe(self._on_event, WATCHED_EVENTS, name="screen")
        self.habit = box.habit
        self.box = box
        self.loop = box.loop
        self.led_pin = box.led_pin
        self.buzzer_pin = box.buzzer_pin
        self.thread: threading.Thread | None = None
        self.crashed: str | None = None
        self._box_closed = False
        self._last_snapshot: BoxView | None = None
        self._buzz_until = 0.0
        self._buzz_name = ""
        self._notice = ""
        self._speed: float | None = None  # the speed last asked for (applied by the loop)
        self._notice_until = 0.0
        self._last_session = ""
        self._fitted_to: Any = None
        self._aio: asyncio.AbstractEventLoop | None = None
        self._poked = False  # a wake from the loop thread is on its way
        self._timer: Any = None
        self._timer_at = math.inf  # time.monotonic() the pending refresh is due
        self._drawn_at = -math.inf
        self._readout: tuple[str, float] = ("", -math.inf)  # the PWM shown, and when (real s)
        self._readout_due: float | None = None  # a newer PWM to show at this time (real s)
        self._shown: dict[str, Any] = {}  # panel -> what it shows now (redraw on change)
        self._lines: dict[str, int] = {}  # panel -> its line breaks (layout when they change)
        self.draws = 0  # refreshes so far (tests count them)
        self.palette: str | None = "truecolor"  # the terminal's colours (Rich's name), at mount
        self._levels: deque[float] = deque(maxlen=100)  # strap readings of this hold
        self._level_state = ""
        self.voice.on_change = self.poke
        if screen_log is not None:
            screen_log.on_line = self.poke

    # ---- the loop thread ------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """A bus subscriber, called in the loop's thread: hand the event over, bounded,
        and wake the screen."""
        self.events.append(event.to_json())
        self.poke()

    def poke(self) -> None:
        """Wake the screen to look at the box again (from any thread; cheap, coalesced)."""
        if self._aio is None or self._poked:
            return
        self._poked = True
        try:
            self.call_later(self._woken)  # thread-safe: a message on the app's queue
        except RuntimeError:  # the screen's event loop is closed: quitting
            pass

    def _woken(self) -> None:
        self._poked = False
        self.schedule_refresh(0.0)

    def schedule_refresh(self, delay: float) -> None:
        """Refresh in ``delay`` s of real time (no sooner than 1/FPS after the last one),
        unless one is due sooner already. A plain asyncio timer on the screen's loop: a
        Textual timer costs a task and a message per frame."""
        aio = self._aio
        if aio is None or aio.is_closed() or self._box_closed:
            return
        now = time.monotonic()
        at = max(now + max(0.0, delay), self._drawn_at + 1.0 / self.fps)
        if self._timer is not None:
            if self._timer_at <= at + 1e-4:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = aio.call_later(max(0.0, at - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self._box_closed or not self.is_running:
            return
        try:
            self.refresh_view()
        except Exception as exc:  # as Textual does with its own callbacks: exit and show it
            self._handle_exception(exc)

    def _run_loop(self) -> None:
        try:
            self.loop.run()
        except Exception as exc:  # show it rather than die silently in a thread
            log.exception("the device loop stopped")
            self.crashed = f"{type(exc).__name__}: {exc}"
            self.poke()

    def start_box(self) -> None:
        """Run the device loop in a background thread (once)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run_loop, name="box-loop", daemon=True)
            self.thread.start()

    def stop_box(self, timeout: float = 5.0) -> None:
        """Stop the loop (it records an interrupted session, light and buzzer off), wait for
        its thread, release the pins. Safe to call twice."""
        if self._box_closed:
            return
        self._box_closed = True
        self.loop.stop()
        if self.thread is not None:
            self.thread.join(timeout)
        self.box.close()

    # ---- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield Static(id="web")  # the phone page and its pairing code, on a line of its own
        yield Static(id="state")
        with Horizontal(id="middle"):
            yield KeptLines(id="light")  # its glow above its PWM value
            yield Static(id="buzzer")
        yield Static(id="tension")
        yield Static(id="voice")
        yield Static(KEY_HELP, id="help")

    def fit_to_size(self) -> None:
        """Small terminals: no borders, a shorter key line (nothing may crash at 40x12)."""
        if self.size == self._fitted_to:
            return
        self._fitted_to = self.size
        self._shown.clear()  # everything is drawn again at the new size
        self._lines.clear()
        width, height = self.size
        compact = width < 70 or height < 22
        self.screen.set_class(compact, "compact")
        self.query_one("#help", Static).update(key_help(width, self.box.strap is not None))

    def on_mount(self) -> None:
        self.query_one("#state").border_title = "state"
        self.query_one("#light").border_title = "light"
        self.query_one("#buzzer").border_title = "buzzer"
        self.query_one("#tension").border_title = "strap tension"
        self.query_one("#voice").border_title = "voice"
        self._aio = asyncio.get_running_loop()
        self.palette = self.console.color_system  # what the glow's colour is brought to
        self.fit_to_size()
        self.start_box()
        self.refresh_view()

    def on_resize(self) -> None:
        self.schedule_refresh(0.0)

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stop_box()

    # ---- keys -----------------------------------------------------------------------------

    def _box_running(self) -> bool:
        return not self._box_closed and self.thread is not None and self.thread.is_alive()

    def action_press(self) -> None:
        if self._box_running():
            self.box.commands.press()
        self.schedule_refresh(0.0)

    def action_double_press(self) -> None:
        """A double press on the box's own clock: quick enough at any simulator speed."""
        if self._box_running():
            self.box.commands.double_press()
        self.schedule_refresh(0.0)

    def action_long_press(self) -> None:
        if self._box_running():
            self.box.commands.long_press()
        self.schedule_refresh(0.0)

    def action_mute(self) -> None:
        self.voice.set_muted(not self.voice.muted)
        # the title's voice status says "muted" or "voice on" itself: no echo of it
        self.flash("words on screen only" if self.voice.muted else "")

    def action_speed(self, step: int) -> None:
        clock = self.loop.clock
        if not isinstance(getattr(type(clock), "speed", None), property):
            self.flash("this clock has no speed")
            return
        current = self._speed if self._speed is not None else clock.speed
        new = next_speed(current, step)  # from the last asked-for speed: quick presses add up
        if new == current:
            self.flash(f"already at {current:g}x, the {'fastest' if step > 0 else 'slowest'}"
                       f" ({SPEEDS[0]:g} to {SPEEDS[-1]:g}x)")
            return
        self._speed = new

        def set_speed() -> None:  # in the loop's thread: the clock never changes under it
            if isinstance(clock, RealClock):  # a test's hand-moved clock has its own
                clock.speed = new
            else:
                setattr(clock, "speed", new)  # noqa: B010

        self.loop.call_soon(set_speed)  # and wakes the loop, so its waits are re-timed
        self.schedule_refresh(0.0)  # the title shows the new speed (once)

    def action_strap(self, what: str) -> None:
        if self.box.strap is None:
            self.flash(NO_STRAP)
            return
        commands = self.box.commands
        if isinstance(commands, PinCommands):  # the simulator's pins: always, on screen
            commands.strap(what)
        self.schedule_refresh(0.0)

    async def action_quit(self) -> None:
        self.stop_box()
        self.exit(0)

    def flash(self, text: str) -> None:
        """Show ``text`` on the title line for a few seconds."""
        self._notice = text
        self._notice_until = time.monotonic() + NOTICE_S
        self.schedule_refresh(0.0)

    # ---- drawing --------------------------------------------------------------------------

    def _snapshot(self) -> BoxView | None:
        # Read from the screen's thread while the loop runs: a torn read (the machine
        # mid-change) is skipped, the next frame gets it right.
        self._last_snapshot = self.box.view()
        return self._last_snapshot

    def _drain_events(self) -> None:
        ring = False
        while self.events:
            event = self.events.popleft()
            kind = event["kind"]
            if kind == "buzz":
                ring = True
                self._buzz_name = str(event.get("name", ""))
                self._buzz_until = time.monotonic() + BUZZ_FLASH_S
            elif kind == "session":
                self._last_session = f"last session: {event.get('outcome')}"
            elif kind == "button":
                self.flash(f"button: {event.get('action')}")
        if ring and not self.voice.muted:
            self.bell()

    def refresh_view(self) -> None:
        """Read the box, redraw the panels whose content changed, and plan the next
        refresh: soon while the light moves, else only when something shown will expire."""
        self._drain_events()
        snap = self._snapshot()
        now_real = time.monotonic()
        self._drawn_at = now_real
        self.draws += 1
        if snap is None:
            return
        try:
            self._draw(snap, now_real)
        except Exception:  # the screen went away mid-frame (quitting)
            if self.is_running and not self._box_closed:
                raise
            return
        delay = self._next_change(snap, now_real)
        if delay is not None and not self._box_closed:
            self.schedule_refresh(delay)

    def _next_change(self, snap: BoxView, now_real: float) -> float | None:
        """Real seconds until what is on screen can change with no event (None: never)."""
        due: list[float] = []
        if self.loop.light_moving or snap.buzzing is not None:
            due.append(1.0 / LIGHT_FPS)
        if snap.hold_left_s is not None and snap.hold_clock_running is not False:
            speed = max(1e-3, float(getattr(self.loop.clock, "speed", 1.0)))
            to_next_second = snap.hold_left_s - (math.ceil(snap.hold_left_s - 1e-6) - 1)
            due.append(max(0.0, to_next_second) / speed + 1e-3)
        if self._readout_due is not None:
            due.append(max(0.0, self._readout_due - now_real))
        for until in (self._notice_until, self._buzz_until):
            if until > now_real:
                due.append(until - now_real)
        if self.screen_log is not None:
            warning = self.screen_log.current(now_real)
            if warning is not None:
                due.append(warning[1] - now_real)
        return min(due) if due else None

    def _put(self, selector: str, key: Any, render: Callable[[], Any]) -> None:
        """Update the widget at ``selector`` only if ``key`` (what it shows) changed."""
        if self._shown.get(selector) == key:
            return
        self._shown[selector] = key
        content = render()
        lines = content.plain.count("\n") if isinstance(content, Text) else -1
        # a layout pass of the whole screen only when the panel's height may change
        layout = self._lines.get(selector) != lines or lines < 0
        self._lines[selector] = lines
        self.query_one(selector, Static).update(content, layout=layout)

    def _draw(self, snap: BoxView, now_real: float) -> None:
        self.fit_to_size()
        log_lines = self.screen_log.lines if self.screen_log is not None else ()
        if snap.sensor_status == "ok" and any("sensor" in line for line in log_lines):
            assert self.screen_log is not None
            self.screen_log.forget()  # the strap is back: its old warning goes
        self._draw_title(now_real)
        self._draw_web()
        self._draw_state(snap)
        self._draw_light(snap)
        self._draw_buzzer(snap, now_real)
        self._draw_tension(snap)
        self._draw_voice(snap)

    def _voice_status(self) -> str:
        """The box's one voice status (as the page, ``status`` and MQTT show it), unless
        the screen knows more: muted, starting, or no voice at all."""
        status = self.voice.status
        snap = self._last_snapshot
        if snap is not None and status in ("voice on",) or (
                snap is not None and status.startswith("voice failed")):
            return screen_words(snap.voice_status, snap.voice_off_reason)
        return status

    def _web_handle(self) -> Any:
        # deferred: only when the screen (Textual) or the page (web extra) is used
        from device.addons.web import WebHandle

        return next((a for a in self.box.addons if isinstance(a, WebHandle)), None)

    def _draw_web(self) -> None:
        """``phone page http://...  pair with code NNNNNN`` (it changes once a phone pairs);
        no line without the page."""
        handle = self._web_handle()
        widget = self.query_one("#web", Static)
        if handle is None:
            widget.display = False
            return
        try:
            code = handle.code
        except Exception:  # noqa: BLE001 - an unreadable store: the page says why
            code = "?"
        key = (handle.url, code)

        def render() -> Text:
            line = Text("phone page ", style="bold")
            line.append(handle.url)
            line.append("  pair with code ")
            line.append(code, style="bold reverse")
            line.append("  (web-code --sim prints it)")
            return line

        self._put("#web", key, render)

    def _draw_title(self, now_real: float) -> None:
        speed = self._speed if self._speed is not None else getattr(self.loop.clock, "speed",
                                                                      None)
        extra: tuple[str, str] | None = None
        if self.crashed:
            extra = (f"the box stopped: {self.crashed}", "bold red")
        elif now_real < self._notice_until and self._notice:
            extra = (self._notice, "italic")
        elif self.screen_log is not None:
            warning = self.screen_log.current(now_real)
            if warning is not None:
                extra = (warning[0], "yellow")
        key = (speed, self._voice_status(), extra)

        def render() -> Text:
            title = Text("Stretch Companion", style="bold")
            if speed:
                title.append(f" · speed {speed:g}x", style="bold")
            title.append(f" · {key[1]}")
            if extra is not None:
                title.append(f" · {extra[0]}", style=extra[1])
            return title

        self._put("#title", key, render)

    def _draw_state(self, snap: BoxView) -> None:
        compact = self.screen.has_class("compact")
        left = None if snap.hold_left_s is None else format_left(snap.hold_left_s)
        filled = None
        if left is not None and not compact:
            planned = snap.hold_planned_s or 1.0
            filled = round((1.0 - (snap.hold_left_s or 0.0) / planned) * 160)  # eighths
        hint = STATE_HINTS.get(snap.state, "")
        if snap.state == "idle" and snap.next_hold_s:  # as chosen with l, or as planned
            hint = f"{hint} · next hold {format_left(snap.next_hold_s)} a leg (l changes it)"
        line2 = hint
        if self._last_session and snap.state in ("idle", "done", "cancelled"):
            line2 = f"{hint} · {self._last_session}" if hint else self._last_session
        key = (snap.state, snap.leg, snap.round, snap.rounds, left, filled, line2)

        def render() -> Text:
            text = Text()
            text.append(STATE_NAMES.get(snap.state, snap.state).upper(), style="bold reverse")
            if snap.leg:
                text.append(f"  {snap.leg} leg · round {snap.round}/{snap.rounds}")
            if left is not None:
                text.append(" · ")
                text.append(left, style="bold")
                text.append(" left")
                if filled is not None:
                    text.append("  " + bar(filled / 160, 20), style="cyan")
            text.append(f"\n{line2}", style="dim")
            return text

        self._put("#state", key, render)

    def _draw_light(self, snap: BoxView) -> None:
        """The light's panel: rows of its glow (in the colour the terminal draws, so a new
        row only when that changes), then the pin's PWM duty and the breath's phase."""
        value = float(self.led_pin.state or 0.0)  # the pin itself, not what the loop meant
        panel = self.query_one("#light", KeptLines)
        compact = self.screen.has_class("compact")
        width = max(1, panel.size.width)
        glow_rows = 1 if compact else 2
        shown = glow_shown(value, self.palette)
        if shown is None:
            off: Row = (("" if compact else " ", None), ("off", DIM))
            glow: tuple[Row, ...] = ((),) * (glow_rows - 1) + (off,)
        else:
            shade, rgb = shown
            style = Style(color=Color.from_rgb(*rgb)) if self.palette else None
            glow = (((shade * width, style),),) * glow_rows
        phase = snap.breath_phase
        row: Row = (("" if compact else " PWM ", None), (self._pwm_readout(value), BOLD))
        if phase is not None:
            row += ((f"  {PHASE_ARROWS[phase]} {PHASE_NAMES[phase]}", BOLD),)
        panel.show((*glow, row))

    def _pwm_readout(self, value: float) -> str:
        """The PWM duty to show: a new value at most ``READOUT_HZ`` times a second while the
        light moves (a refresh is planned for the newest), at once when it stands still."""
        text = format_duty(value)
        shown, at = self._readout
        now = time.monotonic()
        if text == shown:
            self._readout_due = None
        elif not self.loop.light_moving or now >= at + 1.0 / READOUT_HZ:
            self._readout = (text, now)
            self._readout_due = None
            shown = text
        else:
            self._readout_due = at + 1.0 / READOUT_HZ
        return shown

    def _draw_buzzer(self, snap: BoxView, now_real: float) -> None:
        on = bool(self.buzzer_pin.state) or snap.buzzing is not None
        shown = on or now_real < self._buzz_until
        name = (snap.buzzing or self._buzz_name) if shown else None
        if self._shown.get("#buzzer") == (shown, name):
            return
        widget = self.query_one("#buzzer", Static)
        widget.set_class(shown, "sounding")
        self._put("#buzzer", (shown, name), lambda: Text.assemble(("♪ BEEP", "bold"), f"  {name}")
                  if shown else Text("quiet", style="dim"))

    def _strap_band(self, snap: BoxView, kg: float) -> tuple[float, float]:
        """The band a pull should stay in (kg): loaded from ``sensor.loaded_kg``, and below
        the over-pull line drawn from this hold's own level (the coach's rule)."""
        sensor = self.config.sensor
        if snap.state != self._level_state:
            self._level_state = snap.state
            self._levels.clear()
        if snap.state == "hold" and kg >= sensor.loaded_kg:
            self._levels.append(kg)
        if self._levels:
            level = sorted(self._levels)[len(self._levels) // 2]
            top = max(sensor.overpull_ratio * level, level + sensor.overpull_margin_kg)
        else:
            top = sensor.loaded_kg * sensor.overpull_ratio + sensor.overpull_margin_kg
        return sensor.loaded_kg, min(top, GAUGE_MAX_KG)

    def _draw_tension(self, snap: BoxView) -> None:
        status = snap.sensor_status
        kg = snap.tension
        if status == "absent":
            self._put("#tension", ("absent",), lambda: Text(NO_STRAP, style="dim"))
            return
        if kg is None:
            self._put("#tension", (status,),
                      lambda: Text(f"strap sensor: {status}", style="yellow"))
            return
        kg = max(0.0, float(kg))  # below zero is the scale's noise after zeroing: no pull
        units = snap.tension_units
        low, high = self._strap_band(snap, kg)
        width = max(4, self.query_one("#tension", Static).size.width - 22)
        ceiling = snap.tension_ceiling
        top = max(GAUGE_MAX_KG, ceiling or 0.0, kg)  # the scale reaches the ceiling
        key = (f"{kg:5.1f}", units, status, width, round(low, 1), round(high, 1), top, ceiling)

        def render() -> Text:
            line = Text(f"{kg:5.1f} {units} ")
            cells = bar(kg / top, width)
            lo = round(low / top * width)
            hi = round(high / top * width)
            for i, cell in enumerate(cells):
                inside = lo <= i < hi
                style = ("green" if inside else "yellow") if cell != "░" else (
                    "green dim" if inside else "dim")
                line.append(cell, style=style)
            line.append(f" {top:g}", style="dim")
            if status != "ok":
                line.append(f" {status}", style="yellow")
            second = f"\nscale 0-{top:g} · aim for {low:g}-{high:.1f} {units} (green), steady"
            if ceiling:
                second += f" · ceiling {ceiling:g}"
            if units == "rel":
                second += " · rel: relative units until the strap is calibrated"
            line.append(second, style="dim")
            return line

        self._put("#tension", key, render)

    def _draw_voice(self, snap: BoxView) -> None:
        widget = self.query_one("#voice", Static)
        notice = self.voice.notice
        room = max(1, (widget.size.height or 6) - (1 if notice else 0))
        lines = snap.spoken[-room:]
        key = (notice, lines)

        def render() -> Text:
            text = Text()
            if notice:
                text.append(notice + "\n", style="yellow")
            if not lines:
                text.append("(nothing said yet)", style="dim")
            for i, line in enumerate(reversed(lines)):
                if i:
                    text.append("\n")
                if i == 0:
                    text.append("» " + line, style="bold")
                else:
                    text.append("  " + line, style="dim")
            return text

        self._put("#voice", key, render)

    # ---- a text picture of the screen --------------------------------------------------------

    def screen_text(self) -> str:
        """The screen as plain text (for tests and the README)."""
        width, height = self.size
        console = Console(width=width, height=height, file=io.StringIO(), record=True,
                          force_terminal=True, color_system="truecolor", legacy_windows=False,
                          safe_box=False)
        console.print(self.screen._compositor.render_update(full=True))
        return "\n".join(line.rstrip() for line in console.export_text().splitlines())
