"""The voice driver: cached cue WAVs, a killable player, and an engine that may hang.

Everything runs on fakes (an engine that writes tiny WAVs, a player process that
finishes, fails or overruns) with real time-outs of a few tenths of a second at most;
one test renders with the real pyttsx3 + espeak-ng when they are installed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.speech import Pyttsx3Speaker, player_command, speech_estimate_s
from drivers.wavcache import WavCache, cue_key, default_cache_dir, wav_seconds
from tests.tools import need

LINES = ["Right leg. Let's set up.", "Stay here and breathe with the light.", "Ten seconds to go."]
NO_CARD = b"ALSA lib confmisc.c:855:(parse_card) cannot find card '0'\n" \
          b"aplay: main:831: audio open error: No such file or directory\n"


def write_wav(path: str | Path, seconds: float = 0.05, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(rate * seconds))


class FakeEngine:
    """Stands in for a pyttsx3 engine; ``hang`` (an Event) blocks runAndWait until set."""

    def __init__(self, hang: threading.Event | None = None, chatty: bool = False) -> None:
        self.saved: list[str] = []
        self.said: list[str] = []
        self.hang = hang
        self.chatty = chatty
        self._queued: tuple[str, str, str] | None = None

    def save_to_file(self, text: str, filename: str) -> None:
        self._queued = ("save", text, filename)

    def say(self, text: str) -> None:
        self._queued = ("say", text, "")

    def runAndWait(self) -> None:  # noqa: N802 - pyttsx3's name
        if self.hang is not None:
            self.hang.wait()
        assert self._queued is not None
        kind, text, path = self._queued
        if kind == "save":
            write_wav(path)
            self.saved.append(text)
            if self.chatty:
                print(f"Audio saved to {path}")  # what pyttsx3 2.99 does
                os.write(1, b"C-level chatter\n")  # as a C library would
        else:
            self.said.append(text)


class SayOnlyEngine(FakeEngine):
    """An engine that cannot write files (no save_to_file)."""

    save_to_file = None  # type: ignore[assignment]


class FakeProc:
    def __init__(self, returncode: int, stderr: bytes, overrun: bool,
                 gate: threading.Event | None) -> None:
        self._rc = returncode
        self._stderr = stderr
        self._overrun = overrun
        self._gate = gate
        self.killed = threading.Event()
        self.returncode: int | None = None

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        if self._overrun and not self.killed.wait(timeout):
            raise subprocess.TimeoutExpired("fake-player", timeout or 0)
        if self._gate is not None:
            self._gate.wait(5)
        self.returncode = -9 if self.killed.is_set() else self._rc
        return b"", self._stderr

    def kill(self) -> None:
        self.killed.set()


class FakePlayer:
    """A process factory: records each argv and hands out a FakeProc."""

    def __init__(self, returncode: int = 0, stderr: bytes = b"", overrun: bool = False,
                 gate: threading.Event | None = None) -> None:
        self.argvs: list[list[str]] = []
        self.procs: list[FakeProc] = []
        self.returncode, self.stderr, self.overrun, self.gate = returncode, stderr, overrun, gate
        self.existed: list[bool] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> FakeProc:
        self.argvs.append(argv)
        self.existed.append(Path(argv[-1]).is_file())
        proc = FakeProc(self.returncode, self.stderr, self.overrun, self.gate)
        self.procs.append(proc)
        return proc

    @property
    def files(self) -> list[str]:
        return [a[-1] for a in self.argvs]


@pytest.fixture
def releases() -> Iterator[list[threading.Event]]:
    """Events that hold fake engines hung; all set at the end so no thread outlives a test."""
    events: list[threading.Event] = []
    yield events
    for event in events:
        event.set()


@pytest.fixture
def speakers() -> Iterator[list[Pyttsx3Speaker]]:
    made: list[Pyttsx3Speaker] = []
    yield made
    for speaker in made:
        speaker.close()


def make(speakers: list, tmp_path: Path, engines: list[Any] | Any, **kw: Any) -> Pyttsx3Speaker:
    pool = list(engines) if isinstance(engines, list) else [engines]

    def factory() -> Any:
        return pool.pop(0) if len(pool) > 1 else pool[0]

    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("process_factory", FakePlayer())
    kw.setdefault("timeout_margin_s", 2.0)
    kw.setdefault("timeout_factor", 0.0)
    kw.setdefault("start_timeout_s", 2.0)
    kw.setdefault("engine_factory", factory)
    speaker = Pyttsx3Speaker(**kw)
    speakers.append(speaker)
    return speaker


def say_and_wait(speaker: Pyttsx3Speaker, text: str, timeout: float = 5.0) -> None:
    speaker.say(text)
    assert speaker.wait_idle(timeout)


# ---- the cue cache ------------------------------------------------------------------------


def test_fixed_cues_are_rendered_once_and_played_from_the_cache(tmp_path, speakers) -> None:
    first, player = FakeEngine(), FakePlayer()
    speaker = make(speakers, tmp_path, first, fixed_lines=LINES, process_factory=player)
    assert speaker.wait_idle(5)  # pre-rendered in the background
    assert first.saved == LINES and player.argvs == []
    for line in LINES:
        assert wav_seconds(speaker.cache_path(line)) == pytest.approx(0.05)
    say_and_wait(speaker, LINES[1])
    assert player.argvs == [["aplay", "-q", str(speaker.cache_path(LINES[1]))]]
    assert first.saved == LINES  # not rendered again
    speaker.close()

    second, player2 = FakeEngine(), FakePlayer()
    again = make(speakers, tmp_path, second, fixed_lines=LINES, process_factory=player2,
                 audio_device="plughw:CARD=Headphones")
    assert again.wait_idle(5)
    say_and_wait(again, LINES[0])
    assert second.saved == []  # the second run synthesises nothing
    assert player2.argvs == [["aplay", "-D", "plughw:CARD=Headphones", "-q",
                              str(again.cache_path(LINES[0]))]]
    assert again.lines_spoken == 1 and not again.busy()


def test_a_cue_not_yet_rendered_is_rendered_on_first_use(tmp_path, speakers) -> None:
    engine, player = FakeEngine(), FakePlayer()
    speaker = make(speakers, tmp_path, engine, process_factory=player)
    speaker.prepare(LINES[:1])
    say_and_wait(speaker, LINES[0])
    assert engine.saved == [LINES[0]]
    assert player.files == [str(speaker.cache_path(LINES[0]))] and player.existed == [True]


def test_a_dynamic_line_is_rendered_played_and_not_kept(tmp_path, speakers) -> None:
    engine, player = FakeEngine(), FakePlayer()
    speaker = make(speakers, tmp_path, engine, fixed_lines=LINES, process_factory=player)
    assert speaker.wait_idle(5)
    say_and_wait(speaker, "Right leg 60 seconds, left leg 58.")
    assert engine.saved[-1] == "Right leg 60 seconds, left leg 58."
    assert player.existed == [True]
    assert not Path(player.files[0]).exists()  # the temporary render is gone
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        speaker.cache_path(line).name for line in LINES)


@pytest.mark.parametrize("damage", [b"", b"RIFF\x10\x00\x00\x00WAVEjunk", b"not a wav at all"])
def test_a_corrupt_or_empty_cached_wav_is_rendered_again(tmp_path, speakers, damage) -> None:
    speaker = make(speakers, tmp_path, FakeEngine(), fixed_lines=LINES)
    assert speaker.wait_idle(5)
    speaker.close()
    broken = speaker.cache_path(LINES[1])
    broken.write_bytes(damage)

    engine, player = FakeEngine(), FakePlayer()
    again = make(speakers, tmp_path, engine, fixed_lines=LINES, process_factory=player)
    assert again.wait_idle(5)
    assert engine.saved == [LINES[1]]
    assert wav_seconds(broken) == pytest.approx(0.05)
    broken.write_bytes(damage)  # broken again while running: caught before it is played
    say_and_wait(again, LINES[1])
    assert engine.saved == [LINES[1], LINES[1]] and player.existed == [True]


def test_the_key_changes_with_rate_volume_voice_and_engine() -> None:
    base = cue_key("Ten seconds to go.", 160, 0.9, "gmw/en", "espeak")
    others = {cue_key("Ten seconds to go.", 170, 0.9, "gmw/en", "espeak"),
              cue_key("Ten seconds to go.", 160, 0.8, "gmw/en", "espeak"),
              cue_key("Ten seconds to go.", 160, 0.9, "gmw/en-us", "espeak"),
              cue_key("Ten seconds to go.", 160, 0.9, "gmw/en", "sapi5"),
              cue_key("Ten seconds to go!", 160, 0.9, "gmw/en", "espeak")}
    assert base not in others and len(others) == 5


def test_cache_dir_follows_systemd_then_xdg(tmp_path) -> None:
    assert default_cache_dir({"CACHE_DIRECTORY": "/var/cache/stretch-companion"}) == Path(
        "/var/cache/stretch-companion/voice")
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == (
        tmp_path / "stretch-companion" / "voice")
    assert default_cache_dir({}).parts[-3:] == (".cache", "stretch-companion", "voice")


def test_wav_check_and_stale_temporaries(tmp_path) -> None:
    good = tmp_path / "good.wav"
    write_wav(good, seconds=0.5)
    assert wav_seconds(good) == pytest.approx(0.5)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:2000])
    assert wav_seconds(cut) is None and wav_seconds(tmp_path / "missing.wav") is None
    cache = WavCache(tmp_path / "c")
    cache.ensure()
    old, new = cache.temp_path("a"), cache.temp_path("b")
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert cache.sweep() == 1 and not old.exists() and new.exists()


def test_unwritable_cache_dir_falls_back_to_a_temporary_one(
    tmp_path, speakers, caplog, monkeypatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    engine = FakeEngine()
    speaker = make(speakers, tmp_path, engine, fixed_lines=LINES[:1], cache_dir=blocker / "x")
    assert speaker.wait_idle(5)
    say_and_wait(speaker, LINES[0])
    assert engine.saved == [LINES[0]] and speaker.lines_spoken == 1
    assert sum("cannot use the cue cache" in r.message for r in caplog.records) == 1


# ---- hangs, errors and restarts -----------------------------------------------------------


@pytest.mark.parametrize("live_say", [False, True])
def test_a_hung_engine_is_abandoned_and_a_fresh_one_speaks_the_next_line(
    tmp_path, speakers, releases, caplog, live_say
) -> None:
    stuck = threading.Event()
    releases.append(stuck)
    hung, fresh = FakeEngine(hang=stuck), FakeEngine()
    made: list[FakeEngine] = []

    def factory() -> FakeEngine:
        engine = hung if not made else fresh
        made.append(engine)
        return engine

    player = FakePlayer()
    speaker = make(speakers, tmp_path, [], engine_factory=factory, live_say=live_say,
                   process_factory=player, timeout_margin_s=0.2)
    started = time.monotonic()
    speaker.say("one")
    speaker.say("two")
    assert speaker.wait_idle(5)
    assert time.monotonic() - started < 2.0
    assert made == [hung, fresh]
    assert (fresh.said if live_say else fresh.saved) == ["two"]
    assert speaker.available is True and not speaker.busy()
    if not live_say:
        assert len(player.argvs) == 1
    hangs = [r for r in caplog.records if "abandoning it" in r.message]
    assert len(hangs) == 1
    assert not any("voice off" in r.message for r in caplog.records)
    say_and_wait(speaker, "three")
    assert (fresh.said if live_say else fresh.saved) == ["two", "three"]


def test_pyttsx3_stale_engine_entry_is_dropped_before_init(monkeypatch) -> None:
    """A hung worker still holds its engine, so pyttsx3.init() would hand it back."""
    import weakref

    import pyttsx3

    from drivers import speech

    class Engine:
        def __init__(self, name: str | None = None) -> None:
            self.driver_name, self.props = name or "espeak", {}

        def setProperty(self, key: str, value: Any) -> None:  # noqa: N802
            self.props[key] = value

    active: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def init(driver_name: str | None = None, debug: bool = False) -> Engine:
        try:
            return active[driver_name]
        except KeyError:
            engine = active[driver_name] = Engine(driver_name)
            return engine

    monkeypatch.setattr(pyttsx3, "_activeEngines", active)
    monkeypatch.setattr(pyttsx3, "init", init)
    stale = speech._default_engine(160, 0.9, "")
    fresh = speech._default_engine(160, 0.9, "")
    assert fresh is not stale and active[None] is fresh
    assert fresh.props == {"rate": 160, "volume": 0.9}


def test_an_engine_that_keeps_hanging_turns_the_voice_off_once(
    tmp_path, speakers, releases, caplog
) -> None:
    def factory() -> FakeEngine:
        stuck = threading.Event()
        releases.append(stuck)
        return FakeEngine(hang=stuck)

    speaker = Pyttsx3Speaker(engine_factory=factory, cache_dir=tmp_path, timeout_margin_s=0.1,
                             timeout_factor=0.0, process_factory=FakePlayer())
    speakers.append(speaker)
    for text in ("one", "two", "three", "four"):
        speaker.say(text)
    assert speaker.wait_idle(5)
    assert speaker.available is False and not speaker.busy()
    speaker.say("five")
    assert not speaker.busy()
    assert sum("voice off" in r.message for r in caplog.records) == 1
    assert sum("abandoning it" in r.message for r in caplog.records) == 1


def test_an_engine_error_restarts_the_engine_and_speaks_directly(tmp_path, speakers) -> None:
    class Broken(FakeEngine):
        def save_to_file(self, text: str, filename: str) -> None:
            raise RuntimeError("run loop already started")

    fresh = FakeEngine()
    speaker = make(speakers, tmp_path, [Broken(), fresh])
    say_and_wait(speaker, "Right leg 60 seconds.")
    # the line is still said: by a fresh engine, directly
    assert fresh.said == ["Right leg 60 seconds."] and speaker.available is True


def test_an_engine_that_cannot_start_leaves_the_voice_off_with_one_warning(caplog) -> None:
    def broken() -> Any:
        raise OSError("libespeak-ng.so.1: cannot open shared object file")

    speaker = Pyttsx3Speaker(engine_factory=broken)
    assert speaker.available is False
    speaker.say("hello")
    assert not speaker.busy()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "voice off" in warnings[0].message
    assert "libespeak" in warnings[0].message
    speaker.close()


def test_an_engine_that_starts_too_slowly_leaves_the_voice_off(releases, caplog) -> None:
    slow = threading.Event()
    releases.append(slow)

    def factory() -> FakeEngine:
        slow.wait()
        return FakeEngine()

    speaker = Pyttsx3Speaker(engine_factory=factory, start_timeout_s=0.05)
    assert speaker.available is False
    slow.set()
    time.sleep(0.05)
    assert speaker.available is False  # a late start does not flip it back on
    assert sum("voice off" in r.message for r in caplog.records) == 1


# ---- the player ---------------------------------------------------------------------------


def test_an_overrunning_player_is_killed(tmp_path, speakers, caplog) -> None:
    player = FakePlayer(overrun=True)
    speaker = make(speakers, tmp_path, FakeEngine(), fixed_lines=LINES[:1],
                   process_factory=player, play_margin_s=0.1)
    assert speaker.wait_idle(5)
    started = time.monotonic()
    say_and_wait(speaker, LINES[0])
    assert time.monotonic() - started < 2.0
    assert player.procs[0].killed.is_set() and not speaker.busy()
    assert speaker.available is True  # one overrun is not the end of the voice
    assert sum("ran past" in r.message for r in caplog.records) == 1


def test_a_real_player_process_that_hangs_is_killed(tmp_path, speakers) -> None:
    procs: list[subprocess.Popen] = []

    def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen:
        procs.append(subprocess.Popen(argv, **kwargs))
        return procs[-1]

    speaker = make(speakers, tmp_path, FakeEngine(), fixed_lines=LINES[:1],
                   player=[sys.executable, "-c", "import time; time.sleep(60)"],
                   process_factory=popen, play_margin_s=0.2)
    assert speaker.wait_idle(5)
    say_and_wait(speaker, LINES[0])
    assert procs[0].poll() is not None  # killed and reaped


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie left for a non-reaping init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_an_overrunning_wrapper_player_is_ended_with_its_children(tmp_path, speakers) -> None:
    """voice.player may be a script that starts the real player: an overrun ends the whole
    process group, so the child stops too and nothing waits on its pipe."""
    pid_file = tmp_path / "child.pid"
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    wrapper.chmod(0o755)
    speaker = make(speakers, tmp_path, FakeEngine(), fixed_lines=LINES[:1],
                   player=str(wrapper), process_factory=subprocess.Popen, play_margin_s=0.3)
    assert speaker.wait_idle(5)
    started = time.monotonic()
    say_and_wait(speaker, LINES[0])
    took = time.monotonic() - started
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    if not _gone(child):
        os.kill(child, 9)
        raise AssertionError("the player's child outlived the overrun")
    assert took < 1.0  # 0.05 s cue + 0.3 s margin; no extra second waiting on the pipe


def test_a_slow_player_is_waited_for_without_spinning(tmp_path, speakers) -> None:
    """A headless run on virtual time with a real voice blocks while the player plays:
    its CPU time stays a small part of the time it takes."""
    from device.apps.sim import make_sim
    from device.core.config import Config

    player = tmp_path / "slow.sh"
    player.write_text("#!/bin/sh\nsleep 0.4\n")
    player.chmod(0o755)
    speaker = make(speakers, tmp_path, FakeEngine(), player=str(player),
                   process_factory=subprocess.Popen)
    box = make_sim(Config(), speaker=speaker)
    try:
        box.loop.schedule(1.0, box.press_now)
        cpu0, t0 = time.process_time(), time.monotonic()
        box.loop.run(until=30.0)  # intro, safety line, two steps
        cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
    finally:
        box.close()
    assert speaker.lines_spoken >= 3 and elapsed >= 1.2  # it did wait for the player
    assert cpu < 0.2 * elapsed, f"{cpu:.2f} s of CPU in {elapsed:.2f} s"


def test_the_last_line_of_a_run_reaches_the_player(tmp_path, speakers, monkeypatch) -> None:
    """'All done...' is handed to the voice as the session ends: the run waits for it."""
    import device.apps.sim
    from device.core.config import Config
    from device.core.routine import load_routine

    played = tmp_path / "played.log"
    player = tmp_path / "player.sh"
    player.write_text(f"#!/bin/sh\nsleep 0.05\necho \"$1\" >> {played}\n")
    player.chmod(0o755)
    config = Config()
    speaker = make(speakers, tmp_path, FakeEngine(), player=str(player),
                   process_factory=subprocess.Popen,
                   fixed_lines=load_routine(None).fixed_lines(config.session.legs))
    monkeypatch.setattr(device.apps.sim, "sim_speaker", lambda voice, config: speaker)
    box = device.apps.sim.run_headless(config, None, [], voice=True)
    last = box.loop.spoken[-1]
    assert last.startswith("All done")
    assert played.read_text().splitlines()[-1] == str(speaker.cache_path(last))


def test_busy_while_the_player_plays(tmp_path, speakers) -> None:
    gate = threading.Event()
    player = FakePlayer(gate=gate)
    speaker = make(speakers, tmp_path, FakeEngine(), fixed_lines=LINES[:1],
                   process_factory=player)
    assert speaker.wait_idle(5)
    assert not speaker.busy()
    speaker.say(LINES[0])
    deadline = time.monotonic() + 2
    while not player.procs and time.monotonic() < deadline:
        time.sleep(0.001)
    assert speaker.busy()
    gate.set()
    assert speaker.wait_idle(5) and not speaker.busy()


def test_close_stops_the_line_playing(tmp_path, speakers) -> None:
    player = FakePlayer(overrun=True)
    speaker = make(speakers, tmp_path, FakeEngine(), fixed_lines=LINES[:1],
                   process_factory=player, play_margin_s=30.0)
    assert speaker.wait_idle(5)
    speaker.say(LINES[0])
    deadline = time.monotonic() + 2
    while not player.procs and time.monotonic() < deadline:
        time.sleep(0.001)
    speaker.close()
    assert player.procs[0].killed.wait(1)
    assert speaker.wait_idle(2)
    speaker.say("more")
    assert not speaker.busy()


def test_no_sound_card_turns_the_voice_off_after_three_tries(tmp_path, speakers, caplog) -> None:
    player = FakePlayer(returncode=1, stderr=NO_CARD)
    speaker = make(speakers, tmp_path, FakeEngine(), fixed_lines=LINES, process_factory=player)
    assert speaker.wait_idle(5)
    for line in LINES:
        speaker.say(line)
    assert speaker.wait_idle(5)
    assert len(player.argvs) == 3 and speaker.available is False
    failed = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failed) == 2
    assert "audio open error" in failed[0] and "aplay -l" in failed[0]
    assert failed[1].startswith("voice off")


def test_a_missing_player_falls_back_to_the_engine(tmp_path, speakers, caplog) -> None:
    def no_player(argv: list[str], **kwargs: Any) -> Any:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    engine = FakeEngine()
    speaker = make(speakers, tmp_path, engine, process_factory=no_player)
    say_and_wait(speaker, "one")
    say_and_wait(speaker, "two")
    assert engine.said == ["one", "two"] and speaker.lines_spoken == 2
    assert sum("cannot run the player" in r.message for r in caplog.records) == 1


def test_an_engine_without_files_speaks_directly(tmp_path, speakers) -> None:
    engine, player = SayOnlyEngine(), FakePlayer()
    speaker = make(speakers, tmp_path, engine, fixed_lines=LINES, process_factory=player)
    assert speaker.wait_idle(5)
    say_and_wait(speaker, LINES[0])
    assert engine.said == [LINES[0]] and player.argvs == []
    assert not (tmp_path / "cache").exists()  # nothing written


def test_player_command() -> None:
    assert player_command("aplay -q", "", "/c/a.wav") == ["aplay", "-q", "/c/a.wav"]
    assert player_command("aplay -q", "plughw:CARD=Headphones", "/c/a.wav") == [
        "aplay", "-D", "plughw:CARD=Headphones", "-q", "/c/a.wav"]
    assert player_command("paplay --device={device} {file}", "usb", "/a.wav") == [
        "paplay", "--device=usb", "/a.wav"]
    with pytest.raises(ValueError):
        player_command("", "", "/a.wav")


def test_estimate_grows_with_words_and_falls_with_rate() -> None:
    text = "Keep the breath moving, slow and easy."
    assert speech_estimate_s(text, 120) > speech_estimate_s(text, 200) > 0


# ---- stdout stays clean -------------------------------------------------------------------


def test_engine_prints_do_not_reach_stdout(tmp_path, speakers, capfd) -> None:
    engine = FakeEngine(chatty=True)
    speaker = make(speakers, tmp_path, engine, fixed_lines=LINES, mute_fd=True)
    assert speaker.wait_idle(5)
    say_and_wait(speaker, "Right leg 60 seconds.")
    assert len(engine.saved) == len(LINES) + 1
    print("the box's own output")
    out, err = capfd.readouterr()
    assert "Audio saved" not in out + err and "C-level chatter" not in out + err
    assert "the box's own output" in out  # stdout itself is back


# ---- the real engine ------------------------------------------------------------------------


def _real_engine_or_skip() -> None:
    """Go on with a working pyttsx3 + espeak-ng; under CI=true (which installs them) a
    missing one fails, elsewhere the test skips."""
    try:
        import pyttsx3

        pyttsx3.init()
        why = ""
    except Exception as exc:  # no libespeak-ng
        why = f" ({type(exc).__name__}: {exc})"
    need(not why, f"a real speech engine{why}", "apt-get install espeak-ng libespeak-ng1")


def test_real_espeak_renders_a_cached_wav_quietly(tmp_path, speakers, capfd) -> None:
    _real_engine_or_skip()
    player = FakePlayer()
    speaker = Pyttsx3Speaker(fixed_lines=["Ten seconds to go."], cache_dir=tmp_path,
                             process_factory=player)
    speakers.append(speaker)
    assert speaker.available is True
    assert speaker.wait_idle(20)
    path = speaker.cache_path("Ten seconds to go.")
    assert path.read_bytes()[:4] == b"RIFF"
    assert 0.5 < (wav_seconds(path) or 0) < 5
    say_and_wait(speaker, "Ten seconds to go.", timeout=20)
    assert player.files == [str(path)]
    out, _ = capfd.readouterr()
    assert "Audio saved" not in out


def test_real_pyttsx3_gives_a_fresh_engine_while_the_old_one_is_held() -> None:
    _real_engine_or_skip()
    import pyttsx3

    from drivers.speech import _default_engine

    held = _default_engine(160, 0.9, "")  # as an abandoned worker would hold it
    fresh = _default_engine(160, 0.9, "")
    assert fresh is not held and pyttsx3._activeEngines[None] is fresh


def test_stop_cuts_the_line_playing_and_the_voice_goes_on(tmp_path, speakers) -> None:
    # a more urgent line or a press cuts the line off: its player is killed, the queued
    # lines are forgotten, and it is not counted as a failing player (three such stops
    # would otherwise turn the voice off)
    player = FakePlayer(returncode=1, overrun=True)  # exits non-zero when killed
    speaker = make(speakers, tmp_path, FakeEngine(), fixed_lines=LINES[:1],
                   process_factory=player, play_margin_s=30.0)
    assert speaker.wait_idle(5)
    for n in range(1, 5):
        speaker.say(LINES[0])
        speaker.say("queued behind it")
        deadline = time.monotonic() + 2
        while len(player.procs) < n and time.monotonic() < deadline:
            time.sleep(0.001)
        speaker.stop()
        assert player.procs[-1].killed.wait(1)
        assert speaker.wait_idle(5)
    assert len(player.procs) == 4  # the queued lines were never played
    assert speaker.available is True and speaker.last_error == ""


KILLED_BOX = """
import sys, time
from pathlib import Path
from drivers.speech import Pyttsx3Speaker
from tests.test_speech import FakeEngine
tmp = Path(sys.argv[1])
speaker = Pyttsx3Speaker(engine_factory=FakeEngine, cache_dir=tmp / "cache",
                         player=str(tmp / "wrapper.sh"), play_margin_s=60.0,
                         fixed_lines=["Breathe out slowly."])
speaker.wait_idle(5)
speaker.say("Breathe out slowly.")
time.sleep(60)
"""


def test_kill_9_of_the_box_ends_the_player_and_its_children(tmp_path) -> None:
    """Issue 22: kill -9 outside systemd left the voice player and its children running."""
    pid_file = tmp_path / "child.pid"
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\nsleep 60 &\necho $$ $! > {pid_file}\nwait\n")
    wrapper.chmod(0o755)
    box = subprocess.Popen([sys.executable, "-c", KILLED_BOX, str(tmp_path)],
                           cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.is_file() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline and box.poll() is None, "the player never ran"
            time.sleep(0.02)
        player, child = map(int, pid_file.read_text().split())
        time.sleep(0.2)  # the box tells its lifeline right after the start (one pipe write)
        box.kill()  # SIGKILL: nothing in the box runs after this
        box.wait(5)
        deadline = time.monotonic() + 5
        while not (_gone(player) and _gone(child)) and time.monotonic() < deadline:
            time.sleep(0.01)
        left = [p for p in (player, child) if not _gone(p)]
        for p in left:
            os.kill(p, 9)
        assert not left, "the player (or its child) outlived the box"
    finally:
        if box.poll() is None:
            box.kill()
