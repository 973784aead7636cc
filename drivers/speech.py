"""Text-to-speech: a pyttsx3 engine owned by one worker thread, and fakes for tests.

``say`` never blocks the caller. The engine is created inside the worker (pyttsx3
refuses use from two threads); if it cannot start (no espeak library, no audio) the
speaker reports ``available = False`` and the box goes on with light and buzzer.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Speaker(Protocol):
    """What the device loop needs from a voice."""

    available: bool | None

    def say(self, text: str) -> None:
        """Start saying ``text`` (returns at once)."""
        ...

    def busy(self) -> bool:
        """True while a line is being spoken."""
        ...

    def close(self) -> None:
        """Stop the worker; silent from now on."""
        ...


class SilentSpeaker:
    """No voice at all (voice.enabled = false, or --mute)."""

    available: bool | None = False

    def say(self, text: str) -> None:
        """Ignore ``text``."""

    def busy(self) -> bool:
        """Never busy."""
        return False

    def close(self) -> None:
        """Nothing to stop."""


class RecordingSpeaker:
    """A fake voice for tests and headless runs: it keeps every line it was given.

    Timing comes from the cue queue's estimate on the injected clock, so it is never
    busy by itself. ``fail=True`` makes ``say`` raise, as a broken audio device would.
    """

    def __init__(self, fail: bool = False) -> None:
        self.spoken: list[str] = []
        self.fail = fail
        self.available: bool | None = True

    def say(self, text: str) -> None:
        """Record ``text`` (or raise when told to fail)."""
        if self.fail:
            raise OSError("audio device unavailable")
        self.spoken.append(text)

    def busy(self) -> bool:
        """Never busy by itself."""
        return False

    def close(self) -> None:
        """Nothing to stop."""


def _default_engine(rate: int, volume: float, voice: str) -> Any:
    import pyttsx3

    engine = pyttsx3.init()
    engine.setProperty("rate", rate)
    engine.setProperty("volume", volume)
    if voice:
        for v in engine.getProperty("voices"):
            if voice in (v.id, v.name):
                engine.setProperty("voice", v.id)
                break
    return engine


class Pyttsx3Speaker:
    """A real voice: a worker thread owns a pyttsx3 engine and speaks queued lines."""

    def __init__(
        self,
        rate: int = 160,
        volume: float = 0.9,
        voice: str = "",
        engine_factory: Callable[[], Any] | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self._factory = engine_factory or (lambda: _default_engine(rate, volume, voice))
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._busy = threading.Event()
        self._ready = threading.Event()
        self.available: bool | None = None
        self._warned = False
        self._thread = threading.Thread(target=self._work, name="voice", daemon=True)
        self._thread.start()
        self._ready.wait(start_timeout_s)
        if self.available is None:
            self._warn("the speech engine did not start in time")
            self.available = False

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("voice off: %s; going on with the light and buzzer", why)

    def _work(self) -> None:
        try:
            engine = self._factory()
        except Exception as exc:  # no espeak, no audio: any error here means no voice
            self._warn(f"{type(exc).__name__}: {exc}")
            self.available = False
            self._ready.set()
            return
        self.available = True
        self._ready.set()
        while True:
            text = self._lines.get()
            if text is None:
                break
            try:
                engine.say(text)
                engine.runAndWait()
            except Exception as exc:
                self._warn(f"speaking failed: {type(exc).__name__}: {exc}")
            finally:
                if self._lines.empty():
                    self._busy.clear()

    def say(self, text: str) -> None:
        """Queue ``text`` for the worker."""
        if not self.available:
            return
        self._busy.set()
        self._lines.put(text)

    def busy(self) -> bool:
        """True from ``say`` until the worker finished speaking."""
        return self._busy.is_set()

    def close(self) -> None:
        """Ask the worker to stop after the current line."""
        self._lines.put(None)


def make_speaker(enabled: bool, rate: int, volume: float, voice: str) -> Speaker:
    """The one place a real voice is made; tests replace it with a fake."""
    if not enabled:
        return SilentSpeaker()
    return Pyttsx3Speaker(rate=rate, volume=volume, voice=voice)
