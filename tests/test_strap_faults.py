"""The strap when things go wrong: a sensor lost while the hold clock waits, samples that
stop coming, a flapping plug, a pull past the ADC's range, a reading frozen on one value.
All on virtual time, the real NAU7802 driver over the fake chip."""

from __future__ import annotations

from device.apps.sim import make_sim
from device.core.config import Config, with_overrides
from device.core.script import SENSOR_ACTIONS, parse_script
from tests.conftest import Events

# a double press at 8 s goes straight to the hold (8.4); the tightness question is off
NO_ASK = with_overrides(Config(), session={"ask_tightness": False})
STRAP_CLOCK = with_overrides(NO_ASK, sensor={"hold_clock": "strap"})


def run(script: str, config: Config = STRAP_CLOCK, until: float = 600,
        extra: list[tuple[float, object]] = ()) -> tuple[Events, object]:
    events = Events()
    box = make_sim(config, listeners=[events], sensor=True)
    box.add_script(parse_script(script, SENSOR_ACTIONS))
    for at, action in extra:
        box.loop.schedule(at, action)
    box.loop.run(until=until, stop_when_done=True)
    box.close()
    return events, box


def said(events: Events, key: str) -> list[float]:
    return [e["t"] for e in events.kind("speak") if e["key"] == key]


def test_a_sensor_lost_while_the_hold_clock_waits_hands_the_hold_to_the_time_clock() -> None:
    # the script: slack at 30 s (clock waits), sensor unplugged at 35 s
    events, _ = run("press@1,press@8,press@8.3,tension@9:6,tension@30:0,unplug@35", until=3600)
    clock = [(e["t"], e["running"]) for e in events.kind("hold_clock")]
    assert clock[-1] == (35.0, True)  # resumed the moment the sensor was lost
    (hold, *_) = events.kind("hold")
    assert hold["ended"] == "complete" and hold["held_s"] == 60.0
    assert hold["t"] < 80  # 8.1 + 60 s held + the ~4 s the clock waited
    assert "switch" in events.states()


def test_the_strap_clock_gives_up_on_the_clock_when_samples_stop_coming() -> None:
    """No sample arrives (the chip answers but never has a conversion ready): the
    prompt and the configured give-up still happen, on the loop's clock."""
    config = with_overrides(STRAP_CLOCK, session={"hold_seconds": 300},
                            sensor={"paused_limit_seconds": 45})

    def mute(box_holder: list) -> None:
        box_holder[0].sensor.adc.read = lambda: None

    holder: list = []
    events = Events()
    box = make_sim(config, listeners=[events], sensor=True)
    holder.append(box)
    box.add_script(parse_script("press@1,press@8,press@8.3,tension@9:6,tension@30:0",
                                SENSOR_ACTIONS))
    box.loop.schedule(33.0, lambda: mute(holder))
    box.loop.run(until=1000, stop_when_done=True)
    box.close()
    # the clock stops from when the strap went slack (1 s before it says so)
    paused_at = [e["t"] for e in events.kind("hold_clock") if not e["running"]][-2] - 1.0
    gave_up = [e for e in events.kind("hold_clock") if e.get("gave_up")]
    assert len(gave_up) == 1 and abs(gave_up[0]["t"] - (paused_at + 45)) < 0.2
    hold = events.kind("hold")[0]
    assert hold["ended"] == "early" and 20 < hold["held_s"] < 23  # the time held is kept
    prompts = said(events, "hold.paused")
    assert len(prompts) == 1 and prompts[0] - paused_at <= 10  # said at once, once
    assert said(events, "hold.ended_early")  # and why the hold ended


def test_a_flapping_sensor_says_back_at_most_once() -> None:
    flaps = ",".join(f"{'unplug' if i % 2 == 0 else 'replug'}@{12 + i}" for i in range(40))
    events, _ = run("press@1,press@8,press@8.3,tension@9:6," + flaps + ",tension@69:0",
                    config=NO_ASK)
    statuses = [e["status"] for e in events.kind("sensor")]
    assert statuses.count("restored") >= 5  # it did come and go (retried every 5 s)
    assert len(said(events, "sensor.restored")) <= 1
    assert len(said(events, "sensor.lost")) == 1


def test_back_is_said_once_the_sensor_has_stayed_up() -> None:
    events, _ = run("press@1,press@8,press@8.3,tension@9:6,unplug@20,replug@30,tension@69:0",
                    config=NO_ASK)
    restored = next(e["t"] for e in events.kind("sensor") if e["status"] == "restored")
    assert [round(t - restored) for t in said(events, "sensor.restored")] == [5]


def test_a_pull_past_full_scale_is_noticed_and_said_once() -> None:
    # 150 kg is past the fake's full scale (about 100 kg at gain 128): the reading clips
    # (the set-up is skipped once the safety line has been heard: the hold opens at 16.4)
    events, _ = run("press@1,press@16,press@16.3,tension@17:150,tension@28:6,tension@38:150,"
                    "tension@48:6,tension@77:0", config=NO_ASK)
    saturated = [e["t"] for e in events.kind("sensor") if e["status"] == "saturated"]
    assert len(saturated) == 2 and 17 < saturated[0] < 19 and 38 < saturated[1] < 40
    assert len(said(events, "sensor.saturated")) == 1
    assert not any(e["status"] == "stuck" for e in events.kind("sensor"))


def test_a_reading_stuck_on_one_value_is_noticed_said_once_and_not_trusted() -> None:
    holder: list = []
    events = Events()
    box = make_sim(STRAP_CLOCK, listeners=[events], sensor=True)
    holder.append(box)
    fake = box.strap.fake
    box.add_script(parse_script("press@1,press@8,press@8.3,tension@9:6,tension@30:0",
                                SENSOR_ACTIONS))
    # slack at 30 s: the clock waits; at 40 s the reading freezes on the slack value
    box.loop.schedule(40.0, lambda: fake.stick(fake.counts_for(0.0)))
    box.loop.schedule(60.0, lambda: fake.stick(None))
    box.loop.schedule(61.0, lambda: fake.stick(fake.counts_for(0.0)))
    box.loop.run(until=400, stop_when_done=True)
    box.close()
    statuses = [(e["status"], e["t"]) for e in events.kind("sensor")
                if e["status"] in ("stuck", "unstuck")]
    assert [s for s, _ in statuses] == ["stuck", "unstuck", "stuck"]
    assert 43 <= statuses[0][1] < 44.5
    assert len(said(events, "sensor.stuck")) == 1
    # the frozen reading hands the hold back to the time clock: it ends in good time
    resumed = [e["t"] for e in events.kind("hold_clock") if e["running"]]
    assert any(43 <= t < 44.5 for t in resumed)
    assert events.kind("hold")[0]["ended"] == "complete"


def test_the_driver_reads_a_pull_past_the_range_as_its_full_scale() -> None:
    from device.addons.strap import full_scale_of
    from device.box.clock import VirtualClock
    from drivers.fake_nau7802 import FakeNAU7802, StrapModel
    from drivers.nau7802 import FULL_SCALE, NAU7802

    clock = VirtualClock()
    fake = FakeNAU7802(clock, StrapModel(150.0, noise_kg=0.0))
    adc = NAU7802(fake, clock)
    adc.begin()
    assert full_scale_of(adc) == FULL_SCALE
    assert adc.read_blocking() == FULL_SCALE[1]
    fake.strap.set_level(clock.now(), -150.0)
    clock.advance(0.2)
    assert adc.read_blocking() == FULL_SCALE[0]
