"""Speech scheduling: one at a time, stale cues dropped, the countdown kept clear."""

from __future__ import annotations

import threading
import time

from device.voice import Cue, CueQueue, speech_seconds
from drivers.speech import Pyttsx3Speaker


def test_estimate_grows_with_words_and_falls_with_rate() -> None:
    short, long = "Ten seconds to go.", "Keep the breath moving, slow and easy. Don't hold it."
    assert speech_seconds(long, 160) > speech_seconds(short, 160)
    assert speech_seconds(long, 200) < speech_seconds(long, 120)


def test_never_overlaps() -> None:
    q = CueQueue(160)
    q.push(Cue("one two three four five six", "a"))
    q.push(Cue("seven eight", "b"))
    first, _ = q.next_cue(0.0)
    assert first is not None and first.cue.key == "a"
    assert q.next_cue(first.duration_s - 0.01)[0] is None
    second, _ = q.next_cue(first.duration_s)
    assert second is not None and second.cue.key == "b"


def test_stale_cue_is_dropped_not_played_late() -> None:
    q = CueQueue(160)
    q.push(Cue("a long set-up step with very many words in it to say " * 3, "step"))
    q.push(Cue("Stay still.", "reminder", not_after=2.0))
    q.push(Cue("after", "c"))
    started, _ = q.next_cue(0.0)
    assert started is not None
    nxt, dropped = q.next_cue(started.duration_s)
    assert [c.key for c in dropped] == ["reminder"]
    assert nxt is not None and nxt.cue.key == "c"


def test_quiet_window_is_never_spoken_over() -> None:
    q = CueQueue(160)
    q.quiet(10.0, 14.0)
    q.push(Cue("this takes about two seconds to say", "x"))
    assert q.next_cue(9.0)[0] is None  # would run into the window
    assert q.deadline(9.0) == 14.0
    started, _ = q.next_cue(14.0)
    assert started is not None


def test_hush_drops_queued() -> None:
    q = CueQueue(160)
    for k in "abc":
        q.push(Cue(k, k))
    q.next_cue(0.0)
    assert [c.key for c in q.hush()] == ["b", "c"] and q.pending == 0


def test_engine_that_cannot_start_leaves_voice_off(caplog) -> None:
    def broken() -> object:
        raise RuntimeError("libespeak.so.1: cannot open shared object file")

    speaker = Pyttsx3Speaker(engine_factory=broken)
    assert speaker.available is False
    speaker.say("hello")  # no error, no effect
    assert not speaker.busy()
    assert sum("voice off" in r.message for r in caplog.records) == 1


class FakeEngine:
    def __init__(self) -> None:
        self.said: list[str] = []
        self.gate = threading.Event()

    def say(self, text: str) -> None:
        self.said.append(text)

    def runAndWait(self) -> None:  # noqa: N802 - pyttsx3's name
        self.gate.wait(5)


def test_worker_speaks_in_order_and_reports_busy() -> None:
    engine = FakeEngine()
    speaker = Pyttsx3Speaker(engine_factory=lambda: engine)
    assert speaker.available is True
    speaker.say("one")
    speaker.say("two")
    assert speaker.busy()
    engine.gate.set()
    deadline = time.monotonic() + 5
    while speaker.busy() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert engine.said == ["one", "two"] and not speaker.busy()
    speaker.close()
