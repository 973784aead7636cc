"""Text-to-speech that cannot hang the box: cached cue WAVs played by a killable player.

``Pyttsx3Speaker`` has three threads of its own and never blocks its caller:

* an *engine worker* owns the pyttsx3 engine (pyttsx3 refuses use from two threads) and
  does one job at a time: render a line to a WAV (``save_to_file`` + ``runAndWait``) or,
  as a fallback, speak it (``say`` + ``runAndWait``);
* the *dispatcher* ("voice") takes lines from ``say``, plays fixed cues from the WAV
  cache (rendering them on first use, or in the background at start-up), renders any
  other line to a temporary WAV, and plays each with ``aplay -q FILE`` in a subprocess
  that is killed if it runs past the WAV's length plus a margin;
* every engine job has a time-out estimated from the words and the rate. A worker that
  overruns it is abandoned (a daemon thread, never joined) and a fresh one with a fresh
  engine takes over. After ``max_failures`` failures in a row (a hang, an engine error,
  an engine that will not start, a player that fails) the voice is marked unavailable,
  logged once, and the box goes on with the light and the buzzer.

Whatever the engine prints (pyttsx3 2.99 prints "Audio saved to ..." on every
``save_to_file``) is kept out of stdout, and so out of the journal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from drivers.lifeline import shared as shared_lifeline
from drivers.wavcache import (
    WavCache,
    cue_key,
    default_cache_dir,
    discard,
    scratch_cache,
    wav_seconds,
)

log = logging.getLogger(__name__)

DEFAULT_PLAYER = "aplay -q"
"""The command that plays a WAV file; the file's path is appended (or fills ``{file}``)."""


class Speaker(Protocol):
    """What the device loop needs from a voice."""

    available: bool | None

    def say(self, text: str) -> None:
        """Start saying ``text`` (returns at once)."""
        ...

    def busy(self) -> bool:
        """True while a line is being spoken."""
        ...

    def stop(self) -> None:
        """Cut off the line being spoken and forget any queued (returns at once)."""
        ...

    def close(self) -> None:
        """Stop the worker; silent from now on."""
        ...

    # Optional: ``on_idle(callback)``: ``callback()`` is called (from any thread) each time
    # the voice goes from busy to idle, while ``tells_idle`` is True; the loop then sleeps
    # until it instead of polling ``busy()`` while a line runs past its estimate.


class SilentSpeaker:
    """No voice at all (voice.enabled = false, or --mute)."""

    available: bool | None = False

    def say(self, text: str) -> None:
        """Ignore ``text``."""

    def busy(self) -> bool:
        """Never busy."""
        return False

    def stop(self) -> None:
        """Nothing to cut off."""

    def close(self) -> None:
        """Nothing to stop."""


class RecordingSpeaker:
    """A fake voice for tests and headless runs: it keeps every line it was given.

    Timing comes from the cue queue's estimate on the injected clock, so it is never
    busy by itself. ``fail=True`` makes ``say`` raise, as a broken audio device would.
    """

    def __init__(self, fail: bool = False) -> None:
        self.spoken: list[str] = []
        self.stops = 0  # how many times a line was cut off
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

    def stop(self) -> None:
        """Count the cut (the loop's transcript says which line)."""
        self.stops += 1

    def close(self) -> None:
        """Nothing to stop."""


# ---- the real engine ---------------------------------------------------------------------


def _default_engine(rate: int, volume: float, voice: str, driver_name: str | None = None) -> Any:
    """A *new* pyttsx3 engine, set up.

    ``pyttsx3.init`` hands back the engine it made before for the same driver name as
    long as anything still holds it (a WeakValueDictionary); an abandoned, hung worker
    still does, so its entry is removed first and a fresh engine is really built."""
    import pyttsx3

    active = getattr(pyttsx3, "_activeEngines", None)
    if active is not None:
        active.pop(driver_name, None)
    engine = pyttsx3.init(driver_name)
    engine.setProperty("rate", rate)
    engine.setProperty("volume", volume)
    if voice:
        for v in engine.getProperty("voices"):
            if voice in (v.id, v.name):
                engine.setProperty("voice", v.id)
                break
    return engine


def _engine_info(engine: Any, voice: str) -> tuple[str, str]:
    """(driver name, voice id) of ``engine``, for the cache key."""
    name = str(getattr(engine, "driver_name", "") or type(engine).__name__)
    try:
        current = engine.getProperty("voice")
    except Exception:  # fakes and odd drivers: the configured voice will do
        current = None
    return name, str(current or voice)


def _finished_event(engine: Any) -> threading.Event | None:
    """An Event set on pyttsx3's ``finished-utterance`` (None if the engine has no
    callbacks, like the test fakes)."""
    connect = getattr(engine, "connect", None)
    if not callable(connect):
        return None
    finished = threading.Event()
    try:
        connect("finished-utterance", lambda **_: finished.set())
    except Exception:
        return None
    return finished


def _forget_save_target(engine: Any) -> None:
    """pyttsx3 2.99's espeak driver keeps the last ``save_to_file`` name, so a later
    ``say`` writes over that file instead of speaking. Clear it after each render."""
    driver = getattr(getattr(engine, "proxy", None), "_driver", None)
    if driver is not None and hasattr(driver, "_save_file"):
        driver._save_file = None


_WORD = re.compile(r"[\w']+")
_PAUSE = re.compile(r"[.,;:!?]")


def speech_estimate_s(text: str, rate_wpm: float) -> float:
    """Rough time (s) to say ``text`` at ``rate_wpm`` words per minute."""
    words = len(_WORD.findall(text))
    return 0.3 + words * 60.0 / max(rate_wpm, 1.0) + 0.15 * len(_PAUSE.findall(text))


def player_command(player: str | Sequence[str], audio_device: str, path: str) -> list[str]:
    """The player's argv for ``path``: ``{file}``/``{device}`` are filled in; otherwise the
    device goes in as aplay's ``-D DEVICE`` and the path is appended."""
    argv = shlex.split(player) if isinstance(player, str) else list(player)
    if not argv:
        raise ValueError("the player command is empty")
    has_file = any("{file}" in a for a in argv)
    has_device = any("{device}" in a for a in argv)
    if audio_device and not has_device:
        argv[1:1] = ["-D", audio_device]
    argv = [a.replace("{device}", audio_device).replace("{file}", path) for a in argv]
    if not has_file:
        argv.append(path)
    return argv


# ---- keeping the engine's prints out of stdout ------------------------------------------

_mute_lock = threading.Lock()
_muted_threads: set[int] = set()


_DummyThread = getattr(threading, "_DummyThread", ())


def _muted_here() -> bool:
    """True in an engine worker while it works, and in a thread Python did not start
    (espeak-ng runs pyttsx3's synth callback, which prints, on a thread of its own)."""
    if not _muted_threads:
        return False
    return (threading.get_ident() in _muted_threads
            or isinstance(threading.current_thread(), _DummyThread))


class _ThreadMutedStdout:
    """Stands in for ``sys.stdout``: drops writes from muted threads, passes the rest on.

    ``contextlib.redirect_stdout`` would swap stdout for the whole process, and the
    transcript or the screen printing from another thread would vanish meanwhile."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def write(self, text: str) -> int:
        if _muted_here():
            return len(text)
        return self.target.write(text)

    def flush(self) -> None:
        if not _muted_here():
            self.target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


@contextlib.contextmanager
def _python_stdout_muted() -> Iterator[None]:
    ident = threading.get_ident()
    with _mute_lock:
        if not isinstance(sys.stdout, _ThreadMutedStdout):
            sys.stdout = _ThreadMutedStdout(sys.stdout)
        _muted_threads.add(ident)
    try:
        yield
    finally:
        with _mute_lock:
            _muted_threads.discard(ident)
            if not _muted_threads and isinstance(sys.stdout, _ThreadMutedStdout):
                sys.stdout = sys.stdout.target


class _FdMute:
    """File descriptor 1 pointed at /dev/null while anyone holds it (prints from C code).

    This is process-wide, so it is only for a process whose stdout carries nothing else
    (the service, whose stdout is the journal). A holder that hangs is released by the
    dispatcher when it abandons it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: set[object] = set()
        self._saved: int | None = None

    def acquire(self) -> object | None:
        token = object()
        with self._lock:
            if not self._holders:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                try:
                    saved = os.dup(1)
                    null = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(null, 1)
                    os.close(null)
                except OSError:
                    return None
                self._saved = saved
            self._holders.add(token)
        return token

    def release(self, token: object | None) -> None:
        if token is None:
            return
        with self._lock:
            if token not in self._holders:
                return
            self._holders.discard(token)
            if not self._holders and self._saved is not None:
                with contextlib.suppress(OSError):
                    os.dup2(self._saved, 1)
                with contextlib.suppress(OSError):
                    os.close(self._saved)
                self._saved = None


_FD_MUTE = _FdMute()


# ---- the engine worker -------------------------------------------------------------------


@dataclass
class _Job:
    """One thing for the engine to do: ``render`` ``text`` to ``path``, or ``say`` it."""

    kind: str
    text: str
    path: str = ""
    wait_s: float = 60.0
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class _EngineWorker:
    """One daemon thread owning one engine; abandoned, never joined, if it hangs."""

    def __init__(self, factory: Callable[[], Any], number: int, voice: str, mute_fd: bool):
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.can_render = False
        self.info = ("", voice)
        self.fd_token: object | None = None
        self._voice = voice
        self._mute_fd = mute_fd
        self.thread = threading.Thread(target=self._run, args=(factory,),
                                       name=f"voice-engine-{number}", daemon=True)
        self.thread.start()

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        self.fd_token = _FD_MUTE.acquire() if self._mute_fd else None
        try:
            with _python_stdout_muted():
                yield
        finally:
            _FD_MUTE.release(self.fd_token)
            self.fd_token = None

    def _run(self, factory: Callable[[], Any]) -> None:
        try:
            with self._quiet():
                engine = factory()
                self.info = _engine_info(engine, self._voice)
                finished = _finished_event(engine)
        except Exception as exc:  # no espeak, no audio: any error here means no engine
            self.error = exc
            self.ready.set()
            return
        self.can_render = callable(getattr(engine, "save_to_file", None))
        self.ready.set()
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                with self._quiet():
                    if finished is not None:
                        finished.clear()
                    if job.kind == "render":
                        engine.save_to_file(job.text, job.path)
                    else:
                        engine.say(job.text)
                    engine.runAndWait()
                    # pyttsx3 2.99 + espeak-ng: runAndWait returns while espeak's own
                    # thread is still synthesising (and writing the file, or playing).
                    if finished is not None and not finished.wait(job.wait_s):
                        raise TimeoutError("the engine never reported the line finished")
                    if job.kind == "render":
                        _forget_save_target(engine)
            except Exception as exc:
                job.error = exc
            finally:
                job.done.set()

    def retire(self) -> None:
        """Let the thread end after its current job (if it ever ends it)."""
        _FD_MUTE.release(self.fd_token)
        self.jobs.put(None)


_STOP = object()
_PRERENDER = object()


class Pyttsx3Speaker:
    """A real voice: cached cue WAVs played by ``aplay``, an engine that is replaced if
    it hangs, and the light and buzzer left to carry on if the voice gives out.

    ``fixed_lines`` (e.g. ``Routine.fixed_lines(legs)``) are rendered in the background
    at start-up into ``cache_dir`` (default: :func:`drivers.wavcache.default_cache_dir`);
    any other line is rendered when said and not kept. ``audio_device`` is passed to the
    player as ``-D DEVICE``; ``player`` is the command (``{file}``, ``{device}`` are filled
    in, else the path is appended). ``process_factory`` starts the player (default
    ``subprocess.Popen``); ``engine_factory`` makes an engine (default: pyttsx3). An
    engine job may take ``timeout_factor`` x the estimated speech time plus
    ``timeout_margin_s``; the player the WAV's length plus ``play_margin_s``.
    ``live_say=True`` speaks every line with the engine's own ``say`` instead (no cache,
    no player; the fallback anyway for an engine that cannot write WAVs, or when the
    player is not installed). ``mute_fd`` also silences fd 1 around engine calls (for
    the service only: it is process-wide).
    """

    def __init__(
        self,
        rate: int = 160,
        volume: float = 0.9,
        voice: str = "",
        engine_factory: Callable[[], Any] | None = None,
        start_timeout_s: float = 10.0,
        *,
        fixed_lines: Iterable[str] = (),
        cache_dir: str | os.PathLike[str] | None = None,
        audio_device: str = "",
        player: str | Sequence[str] = DEFAULT_PLAYER,
        process_factory: Callable[..., Any] | None = None,
        timeout_margin_s: float = 5.0,
        timeout_factor: float = 2.0,
        play_margin_s: float = 2.0,
        max_failures: int = 3,
        live_say: bool = False,
        mute_fd: bool = False,
        which: Callable[[str], str | None] | None = None,
    ) -> None:
        self._factory = engine_factory or (lambda: _default_engine(rate, volume, voice))
        self._rate = rate
        self._volume = volume
        self._voice = voice
        self._start_timeout_s = start_timeout_s
        self._cache_dir = cache_dir
        self._cache: WavCache | None = None
        self._audio_device = audio_device
        self._player = player
        player_command(player, audio_device, "x.wav")  # a bad command fails here, not later
        self._popen = process_factory or subprocess.Popen
        if self._popen is subprocess.Popen:
            shared_lifeline().start()  # ready before the first player starts
        self._which = which or shutil.which  # is a program there (aplay, for espeak)?
        self._timeout_margin_s = timeout_margin_s
        self._timeout_factor = timeout_factor
        self._play_margin_s = play_margin_s
        self._max_failures = max(1, max_failures)
        self._live_say = live_say
        self._mute_fd = mute_fd

        self._lines: queue.Queue[Any] = queue.Queue()
        self._cond = threading.Condition()
        self._pending = 0
        self._todo: deque[str] = deque()
        self._fixed: dict[str, None] = {}
        self._prerendering = False
        self._current: str | None = None  # the line being rendered or played
        self._closed = threading.Event()
        self._proc: Any = None
        self._cut = False  # the playing line was stopped on purpose
        self._workers = 0
        self._worker: _EngineWorker | None = None
        self._key_base = ("", voice)
        self._failures = 0
        self._player_failures = 0
        self._bad_wavs = 0
        self._use_player = True
        self._warned: set[str] = set()
        self._dispatcher: threading.Thread | None = None
        self._idle_hooks: list[Callable[[], None]] = []

        self.available: bool | None = None
        self.last_error = ""
        # what happened to the last line: True heard (played, or spoken by the engine),
        # False not (the player failed), None nothing said yet
        self.last_line_ok: bool | None = None
        self.lines_spoken = 0
        self.renders = 0

        worker = self._new_worker()
        if not worker.ready.wait(start_timeout_s):
            worker.retire()
            self._give_up("the speech engine did not start in time")
            return
        if worker.error is not None:
            self._give_up(f"{type(worker.error).__name__}: {worker.error}")
            return
        self._worker = worker
        self._key_base = worker.info
        self.available = True
        self.prepare(fixed_lines)
        self._dispatcher = threading.Thread(target=self._serve, name="voice", daemon=True)
        self._dispatcher.start()

    # ---- the Speaker protocol ------------------------------------------------------------

    def say(self, text: str) -> None:
        """Queue ``text``; returns at once."""
        if not self.available or self._closed.is_set() or not text.strip():
            return
        with self._cond:
            self._pending += 1
        self._lines.put(text)

    def busy(self) -> bool:
        """True from ``say`` until the line has been played (or given up on)."""
        return self._pending > 0

    tells_idle = True  # on_idle callbacks come: the loop need not poll busy()

    def on_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from the voice's thread) whenever the voice goes idle:
        every line given to ``say`` played, cut off or given up on."""
        self._idle_hooks.append(callback)

    def _went_idle(self) -> None:
        """Tell the idle hooks (call without ``_cond`` held)."""
        if self._pending:
            return
        for hook in list(self._idle_hooks):
            try:
                hook()
            except Exception:  # a broken listener never stops the voice
                log.exception("voice idle hook failed")

    def stop(self) -> None:
        """Cut off the line playing (its player is killed) and forget the queued ones;
        the voice goes on with the next ``say``."""
        dropped = 0
        keep: list[Any] = []
        while True:
            try:
                item = self._lines.get_nowait()
            except queue.Empty:
                break
            if item is _STOP or item is _PRERENDER:
                keep.append(item)
            else:
                dropped += 1
        for item in keep:
            self._lines.put(item)
        with self._cond:
            self._pending = max(0, self._pending - dropped)
            proc = self._proc
            self._cut = proc is not None
            self._cond.notify_all()
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.kill()
        self._went_idle()

    def close(self) -> None:
        """Stop: the line playing is cut off, nothing more is said."""
        self._closed.set()
        with self._cond:
            self._todo.clear()
            proc = self._proc
        if proc is not None:
            _kill_group(proc)
        self._lines.put(_STOP)
        if self._dispatcher is None and self._worker is not None:
            self._worker.retire()

    # ---- extras --------------------------------------------------------------------------

    def prepare(self, lines: Iterable[str]) -> None:
        """Treat ``lines`` as fixed cues: render each to the cache in the background."""
        with self._cond:
            for line in lines:
                if line.strip() and line not in self._fixed:
                    self._fixed[line] = None
                    self._todo.append(line)
        if self._dispatcher is not None:
            self._lines.put(_PRERENDER)  # wake the dispatcher if it is waiting

    def wait_idle(self, timeout: float) -> bool:
        """Wait (real time) until nothing is queued, playing or left to pre-render."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._pending == 0 and not self._prerendering
                and (not self._todo or not self.available or self._closed.is_set()),
                timeout,
            )

    def wait_spoken(self, timeout: float | None) -> bool:
        """Block (real time, on a condition: no polling) until every line given to ``say``
        has been played or given up on; True if so within ``timeout`` s."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def line_limit_s(self, text: str) -> float:
        """The longest one line may take (s): its render up to the engine's time-out, then
        playing up to about its length plus the player's margin (the overrun limits)."""
        return (self._timeout_s(text) + 2.0 * speech_estimate_s(text, self._rate)
                + self._play_margin_s)

    def drain(self) -> bool:
        """Block until the lines already given have been played (the last line of a run
        must reach the player before the run ends), for at most the sum of their overrun
        limits; True if they were all played or given up on in time."""
        with self._lines.mutex:
            texts = [t for t in self._lines.queue if isinstance(t, str)]
        with self._cond:
            if self._current is not None:
                texts.append(self._current)
        return self.wait_spoken(sum(self.line_limit_s(t) for t in texts))

    def cache_path(self, text: str) -> Path:
        """Where ``text``'s WAV is (or would be) cached."""
        return self._get_cache(create=False).path(self._key(text))

    # ---- the dispatcher ------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while True:
                item = self._next_item()
                if item is _STOP:
                    break
                if item is _PRERENDER:
                    self._prerender_one()
                    continue
                with self._cond:
                    self._current = item
                try:
                    if self.available and not self._closed.is_set():
                        self._speak(item)
                except Exception:  # the dispatcher must survive anything
                    log.exception("speaking %r failed", item)
                finally:
                    with self._cond:
                        self._current = None
                        self._pending = max(0, self._pending - 1)
                        self._cond.notify_all()
                    self._went_idle()
        finally:
            if self._worker is not None:
                self._worker.retire()
            with self._cond:
                self._pending = 0
                self._cond.notify_all()
            self._went_idle()

    def _next_item(self) -> Any:
        while True:
            with self._cond:
                more = bool(self._todo) and bool(self.available) and not self._closed.is_set()
            if not more:
                item = self._lines.get()
            else:
                try:
                    item = self._lines.get_nowait()
                except queue.Empty:
                    return _PRERENDER
            if item is _PRERENDER and not more:
                continue  # a wake-up with nothing (left) to pre-render
            return item

    def _prerender_one(self) -> None:
        with self._cond:
            if not self._todo:
                return
            text = self._todo.popleft()
            self._prerendering = True
        try:
            if self.available and self._can_render():
                cache = self._get_cache()
                key = self._key(text)
                if cache.lookup(key) is None:
                    self._render(text, key, cache, keep=True)
            else:
                with self._cond:
                    self._todo.clear()
        except Exception:
            log.exception("pre-rendering %r failed", text)
        finally:
            with self._cond:
                self._prerendering = False
                self._cond.notify_all()

    def _can_render(self) -> bool:
        worker = self._worker
        return (self._use_player and not self._live_say and worker is not None
                and worker.can_render)

    def _speak(self, text: str) -> None:
        if self._can_render() and self._render_and_play(text) == "done":
            return
        if self.available and not self._closed.is_set():
            outcome = self._run_job(_Job("say", text))
            if outcome == "ok":
                self.lines_spoken += 1
                self.last_line_ok = True
            elif outcome in ("error", "hung"):
                self.last_line_ok = False

    def _render_and_play(self, text: str) -> str:
        """'done' (played, failed or dropped) or 'fallback' (say it with the engine)."""
        cache = self._get_cache()
        key = self._key(text)
        keep = text in self._fixed
        clip = cache.lookup(key) if keep else None
        if clip is None:
            rendered = self._render(text, key, cache, keep=keep)
            if rendered == "hung":
                return "done"  # dropped: the loop has moved on, a fresh engine is ready
            if rendered == "bad":
                return "fallback"
            clip = rendered
        path, seconds = clip
        try:
            played = self._play(path, seconds)
        finally:
            if not keep:
                discard(path)
        return "fallback" if played == "missing" else "done"

    def _render(self, text: str, key: str, cache: WavCache, keep: bool) -> Any:
        """Render ``text``: (path, seconds), or 'hung' or 'bad'."""
        temp = cache.temp_path(key)
        outcome = self._run_job(_Job("render", text, str(temp)))
        if outcome != "ok":
            discard(temp)
            return "hung" if outcome == "hung" else "bad"
        self.renders += 1
        if keep:
            clip = cache.commit(temp, key)
        else:
            seconds = wav_seconds(temp)
            clip = None if seconds is None else (temp, seconds)
            if clip is None:
                discard(temp)
        if clip is None:
            self._bad_wavs += 1
            self.last_error = "the speech engine wrote no usable WAV file"
            if self._bad_wavs >= self._max_failures:
                self._live_say = True
                self._warn_once("wav", "the speech engine does not write usable WAV files; "
                                "speaking lines through it directly")
            return "bad"
        self._bad_wavs = 0
        return clip

    # ---- engine jobs, hangs and restarts -------------------------------------------------

    def _timeout_s(self, text: str) -> float:
        return self._timeout_margin_s + self._timeout_factor * speech_estimate_s(text, self._rate)

    def _run_job(self, job: _Job) -> str:
        """Hand ``job`` to the engine worker: 'ok', 'error' or 'hung' (or 'off')."""
        worker = self._worker
        if worker is None:
            return "off"
        limit = self._timeout_s(job.text)
        job.wait_s = limit + 1.0  # the worker gives up just after the dispatcher does
        worker.jobs.put(job)
        if not job.done.wait(limit):
            self._failures += 1
            why = f"hung for {limit:.1f} s on {job.text[:40]!r}"
            self.last_error = f"the speech engine {why}"
            self._warn_once("hung", f"the speech engine {why}; abandoning it and starting "
                            "a fresh one", else_level=logging.INFO)
            self._replace_worker(why)
            return "hung"
        if job.error is not None:
            self._failures += 1
            why = f"{type(job.error).__name__}: {job.error}"
            self.last_error = f"the speech engine failed: {why}"
            self._warn_once("error", f"the speech engine failed ({why}); starting a fresh one",
                            else_level=logging.INFO)
            self._replace_worker(why)
            return "error"
        self._failures = 0
        return "ok"

    def _replace_worker(self, why: str) -> None:
        old, self._worker = self._worker, None
        if old is not None:
            old.retire()  # a hung one never reads this; it is simply left behind
        while self._failures < self._max_failures and not self._closed.is_set():
            worker = self._new_worker()
            if worker.ready.wait(self._start_timeout_s) and worker.error is None:
                self._worker = worker
                return
            worker.retire()
            self._failures += 1
            err = worker.error
            why = f"{type(err).__name__}: {err}" if err else "did not start in time"
            log.info("a fresh speech engine did not start: %s", why)
        if not self._closed.is_set():
            self._give_up(f"the speech engine failed {self._failures} times in a row "
                          f"(last: {why})")

    def _new_worker(self) -> _EngineWorker:
        self._workers += 1
        return _EngineWorker(self._factory, self._workers, self._voice, self._mute_fd)

    # ---- the player ----------------------------------------------------------------------

    def _play(self, path: Path, seconds: float) -> str:
        """Play ``path``: 'ok', 'failed' or 'missing' (the player cannot be run)."""
        argv = player_command(self._player, self._audio_device, str(path))
        try:
            # a group of its own: an overrun ends the player and any children it started
            proc = self._popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            self._use_player = False
            if self._engine_plays_through_aplay():
                # pyttsx3's espeak driver plays its own lines with `aplay` (and ignores
                # its failure): speaking through it would only print "aplay: not found"
                self.last_line_ok = False
                self._give_up(f"cannot run the player {argv[0]!r} ({exc}) and the espeak "
                              "engine plays through aplay too: nothing can be heard "
                              "(install alsa-utils)")
                return "failed"
            self._warn_once("player-missing", f"cannot run the player {argv[0]!r} ({exc}); "
                            "speaking through the engine instead")
            return "missing"
        with self._cond:
            self._proc = proc
        lifeline = shared_lifeline() if self._popen is subprocess.Popen else None
        if lifeline is not None:
            lifeline.hold(proc.pid)  # a kill -9 of the box ends the player's whole group
        if self._closed.is_set():
            _kill_group(proc)
        limit = seconds + self._play_margin_s
        try:
            _, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _stop(proc)
            msg = f"the player ran past {limit:.1f} s on a {seconds:.1f} s cue and was stopped"
            self._warn_once("overrun", msg, else_level=logging.INFO)
            return self._player_failed(msg)
        finally:
            with self._cond:
                self._proc = None
                cut, self._cut = self._cut, False
            if lifeline is not None:
                lifeline.release(proc.pid)
        if self._closed.is_set() or cut:
            return "ok"  # stopped on purpose: not a failing player
        if proc.returncode != 0:
            text = (err or b"").decode("utf-8", "replace").strip().splitlines()
            detail = text[-1] if text else "no message"
            msg = f"the player {argv[0]!r} failed (exit {proc.returncode}): {detail}"
            hint = ""
            if "audio open error" in detail or "soundcard" in detail:
                hint = ("; is there a sound card? `aplay -l` lists them, `aplay -L` their "
                        "names for voice.audio_device")
            self._warn_once("player-failed", msg + hint, else_level=logging.INFO)
            return self._player_failed(msg)
        self._player_failures = 0
        self.lines_spoken += 1
        self.last_line_ok = True
        return "ok"

    def _engine_plays_through_aplay(self) -> bool:
        """True when the engine's own ``say`` needs ``aplay`` and there is none (pyttsx3's
        espeak driver on Linux)."""
        engine = str(self._key_base[0]).lower() if self._key_base else ""
        return (sys.platform.startswith("linux") and "espeak" in engine
                and self._which("aplay") is None)

    def _player_failed(self, msg: str) -> str:
        self._player_failures += 1
        self.last_line_ok = False
        self.last_error = msg
        if self._player_failures >= self._max_failures:
            self._give_up(f"no sound after {self._player_failures} tries ({msg})")
        return "failed"

    # ---- helpers ---------------------------------------------------------------------------

    def _get_cache(self, create: bool = True) -> WavCache:
        if self._cache is None:
            cache = WavCache(self._cache_dir or default_cache_dir())
            if not create:
                return cache
            try:
                cache.ensure()
            except OSError as exc:
                self._warn_once("cache", f"cannot use the cue cache {cache.folder} ({exc}); "
                                "using a temporary folder")
                cache = scratch_cache()
                cache.ensure()
            self._cache = cache
        return self._cache

    def _key(self, text: str) -> str:
        engine, voice_id = self._key_base
        # both: pyttsx3 may report the voice before a queued setProperty has taken effect
        return cue_key(text, self._rate, self._volume, f"{self._voice}|{voice_id}", engine)

    def _warn_once(self, key: str, message: str, else_level: int = logging.DEBUG) -> None:
        if key in self._warned:
            log.log(else_level, "voice: %s", message)
            return
        self._warned.add(key)
        log.warning("voice: %s", message)

    def _give_up(self, why: str) -> None:
        """No voice from now on; said once."""
        self.available = False
        if "off" not in self._warned:
            self._warned.add("off")
            log.warning("voice off: %s; going on with the light and buzzer", why)
        self.last_error = self.last_error or why
        with self._cond:
            self._todo.clear()
            self._pending = 0
            proc = self._proc
            self._cond.notify_all()
        while True:
            try:
                item = self._lines.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._lines.put(_STOP)
                break
        if proc is not None:
            _kill_group(proc)
        self._went_idle()


def _kill_group(proc: Any) -> None:
    """Kill the player and everything it started: it leads a process group of its own
    (``start_new_session``), so a wrapper script's children go with it."""
    pid = getattr(proc, "pid", None)
    if isinstance(pid, int) and pid > 0:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.kill()


def _stop(proc: Any) -> None:
    """Kill an overrunning player's whole group and reap it (never waiting long)."""
    _kill_group(proc)
    with contextlib.suppress(Exception):
        proc.communicate(timeout=1.0)


def make_speaker(
    enabled: bool,
    rate: int,
    volume: float,
    voice: str,
    *,
    fixed_lines: Iterable[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    audio_device: str = "",
    player: str | Sequence[str] = DEFAULT_PLAYER,
) -> Speaker:
    """The one place the box's real voice is made (for ``run``: stdout is the journal,
    so even C-level prints are silenced); tests replace it with a fake."""
    if not enabled:
        return SilentSpeaker()
    return Pyttsx3Speaker(rate=rate, volume=volume, voice=voice, fixed_lines=fixed_lines,
                          cache_dir=cache_dir, audio_device=audio_device, player=player,
                          mute_fd=True)
