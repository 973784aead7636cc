"""Speech scheduling: one at a time, stale cues dropped, the countdown kept clear."""

from __future__ import annotations

import threading
import time

from device.core.cues import Cue, CueQueue, Priority, speech_seconds
from device.core.machine import Speak
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
    q.push(Cue("Stay still.", "reminder", not_after=2.0, priority=Priority.REMINDER))
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


# ---- priorities (issue 11) -------------------------------------------------------------------



def test_the_machines_speak_is_the_queues_cue() -> None:
    assert Speak is Cue  # one type: the machine's line carries its priority to the queue


def test_higher_priority_goes_first_fifo_within_a_priority() -> None:
    q = CueQueue(160)
    q.push(Cue("reminder one", "r1", priority=Priority.REMINDER))
    q.push(Cue("coach", "c", priority=Priority.COACH))
    q.push(Cue("timing one", "t1", priority=Priority.TIMING))
    q.push(Cue("timing two", "t2", priority=Priority.TIMING))
    q.push(Cue("pain", "s", priority=Priority.SAFETY))
    order, now = [], 0.0
    while q.pending:
        started, _ = q.next_cue(now)
        if started is not None:
            order.append(started.cue.key)
        now += 10.0
    assert order == ["s", "t1", "t2", "c", "r1"]


def test_a_higher_cue_interrupts_and_the_cut_line_is_said_again() -> None:
    q = CueQueue(160)
    q.push(Cue("Keep your knee long, lower the leg if it bends.", "reminder.knee",
               not_after=30.0, priority=Priority.REMINDER))
    first, _ = q.next_cue(0.0)
    assert first is not None
    q.push(Cue("Too much pull.", "coach.overpull", priority=Priority.SAFETY))
    assert q.interrupting(1.0) == first.cue
    assert q.cut(1.0) == first.cue
    started, _ = q.next_cue(1.0)
    assert started is not None and started.cue.key == "coach.overpull"
    again, _ = q.next_cue(started.at + started.duration_s + 2.0)  # after its quiet gap
    assert again is not None and again.cue.key == "reminder.knee"


def test_a_reminder_cut_off_twice_is_not_started_a_third_time() -> None:
    q = CueQueue(160)
    q.push(Cue("Keep your knee long, lower the leg if it bends.", "reminder.knee",
               not_after=60.0, priority=Priority.REMINDER))
    q.push(Cue("Hold for one minute.", "hold.start", not_after=60.0))
    now, starts = 0.0, []
    for _ in range(2):  # started, cut by a safety line, started again, cut again
        while True:
            started, _ = q.next_cue(now)
            if started is not None and started.cue.key == "reminder.knee":
                break
            now = (started.at + started.duration_s) if started else now + 0.5
        starts.append(now)
        q.push(Cue("Too much pull.", "coach.overpull", priority=Priority.SAFETY))
        assert q.cut(now + 1.0) is not None
        pull, _ = q.next_cue(now + 1.0)
        assert pull is not None and pull.cue.key == "coach.overpull"
        now = pull.at + pull.duration_s + 2.0
    assert len(starts) == 2
    later, _ = q.next_cue(now)
    assert later is None and q.dropped[-1].key == "reminder.knee"
    # a timing line cut off keeps coming back: only reminders are limited
    q.push(Cue("Halfway.", "hold.halfway", not_after=90.0))
    for _ in range(3):
        line, _ = q.next_cue(now)
        assert line is not None and line.cue.key == "hold.halfway"
        q.push(Cue("Too much pull.", "coach.overpull", priority=Priority.SAFETY))
        q.cut(now + 0.2)
        pull, _ = q.next_cue(now + 0.2)
        now = pull.at + pull.duration_s + 0.1


def test_an_equal_or_lower_cue_never_interrupts() -> None:
    q = CueQueue(160)
    q.push(Cue("Ten seconds to go.", "hold.ten_left", priority=Priority.TIMING))
    q.next_cue(0.0)
    q.push(Cue("Halfway.", "hold.halfway", priority=Priority.TIMING))
    q.push(Cue("Stop bouncing.", "coach.bounce", priority=Priority.COACH))
    assert q.interrupting(0.5) is None


def test_a_cue_whose_reason_has_passed_is_dropped_not_said_late() -> None:
    q = CueQueue(160)
    bouncing = [True]
    q.push(Cue("a long line that keeps the voice busy for a while yet", "step"))
    q.push(Cue("No bouncing.", "coach.bounce", priority=Priority.COACH,
               still=lambda: bouncing[0]))
    first, _ = q.next_cue(0.0)
    assert first is not None
    bouncing[0] = False  # the bouncing stopped while the line was being said
    nxt, dropped = q.next_cue(first.duration_s)
    assert nxt is None and [c.key for c in dropped] == ["coach.bounce"]


def test_safety_waits_while_its_reason_holds_and_never_over_the_countdown() -> None:
    q = CueQueue(160)
    q.quiet(10.0, 14.0)
    q.push(Cue("Too much pull. Ease off; a stretch should never hurt.", "coach.overpull",
               priority=Priority.SAFETY, still=lambda: True))
    assert q.next_cue(8.0)[0] is None  # would run into the beeps
    assert q.deadline(8.0) == 14.0
    started, dropped = q.next_cue(14.0)
    assert started is not None and dropped == []


def test_a_timing_line_about_to_miss_its_moment_goes_before_a_longer_one() -> None:
    q = CueQueue(160)
    q.push(Cue("a long set-up step with very many words in it to say " * 3, "step"))
    q.push(Cue("Ten seconds to go.", "hold.ten_left", not_after=2.0))
    started, _ = q.next_cue(0.0)
    assert started is not None and started.cue.key == "hold.ten_left"


def test_same_key_waiting_twice_keeps_the_newer() -> None:
    q = CueQueue(160)
    q.push(Cue("busy line", "x"))
    q.next_cue(0.0)
    q.push(Cue("old", "coach.overpull", priority=Priority.SAFETY))
    q.push(Cue("new", "coach.overpull", priority=Priority.SAFETY))
    assert [c.text for c in q.waiting()] == ["new"]


def test_a_reminder_is_skipped_right_after_the_strap_cued_the_same_mistake() -> None:
    q = CueQueue(160)
    q.push(Cue("No bouncing.", "coach.bounce", priority=Priority.COACH, topic="bounce"))
    q.next_cue(0.0)
    q.push(Cue("Stay still.", "reminder.bounce", 40.0, Priority.REMINDER, topic="bounce"))
    q.push(Cue("Knee long.", "reminder.knee", 40.0, Priority.REMINDER, topic="knee"))
    started, dropped = q.next_cue(5.0)
    assert [c.key for c in dropped] == ["reminder.bounce"] and q.skipped
    assert started is not None and started.cue.key == "reminder.knee"


def test_a_reminder_waits_for_quiet_before_it_starts() -> None:
    q = CueQueue(160)
    q.push(Cue("one two three", "line"))
    first, _ = q.next_cue(0.0)
    assert first is not None
    q.push(Cue("Knee long.", "reminder.knee", 40.0, Priority.REMINDER))
    end = first.duration_s
    assert q.next_cue(end)[0] is None
    assert q.deadline(end) == end + 2.0
    assert q.next_cue(end + 2.0)[0] is not None
