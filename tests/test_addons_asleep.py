"""Add-ons that sleep (issue 23): the page's server has no timer while no page is open
(uvicorn's own main loop ticks every 0.1 s), and the MQTT client's network thread waits
for traffic up to the keep-alive (paho's own ``loop_start`` wakes every second)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path
from typing import Any

from device.apps.builder import build_box
from device.box.clock import VirtualClock
from device.core.config import Config
from tests.tools import need


def _timers(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """The live timers of ``loop``, read in its own thread."""

    async def probe() -> list[Any]:
        return [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]

    return asyncio.run_coroutine_threadsafe(probe(), loop).result(5)


def test_the_page_server_keeps_no_timer_while_no_page_is_open(tmp_path: Path,
                                                               monkeypatch) -> None:
    import httpx

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    box = build_box(Config(), mode="sim", clock=VirtualClock(), web="127.0.0.1:0",
                    config_path=tmp_path / "c.toml")
    from device.addons.web import WebHandle

    handle = next(a for a in box.addons if isinstance(a, WebHandle))
    server = handle.server
    try:
        loop = server.web.hub.loop
        assert loop is not None
        assert _timers(loop) == []  # uvicorn's main loop would have its 0.1 s sleep here
        answer = httpx.get(handle.url + "api/state")
        assert answer.status_code == 401
        # the Date header is still made, now when a response asks for it
        date = email.utils.parsedate_to_datetime(answer.headers["date"])
        assert abs(date.timestamp() - time.time()) < 5
    finally:
        box.close()
    assert not server.thread.is_alive()  # stop() woke the waiting main loop


def test_the_mqtt_network_thread_waits_up_to_the_keep_alive(tmp_path: Path) -> None:
    from tests.broker import INSTALL, MOSQUITTO, Mosquitto

    need(MOSQUITTO is not None, "mosquitto", INSTALL)
    from device.addons.mqtt import Publisher, resolve
    from device.core.config import MqttSettings

    broker = Mosquitto(tmp_path / "broker", tls=False).start()
    try:
        ep = resolve(MqttSettings(url=broker.url, box_id="box1"))
        pub = Publisher(ep, Config(), view=lambda: {"state": "idle"}, store=None,
                        wall=lambda: __import__("datetime").datetime.now().astimezone(),
                        keepalive_s=20)
        waits: list[float] = []
        real = pub.client._loop

        def spy(timeout: float = 1.0) -> Any:
            waits.append(timeout)
            return real(timeout)

        pub.client._loop = spy  # type: ignore[method-assign]
        pub.start()
        deadline = time.monotonic() + 10
        while not pub._connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pub._connected
        pub.close(wait_s=1.0)  # disconnect wakes the waiting select at once
        assert waits and set(waits) == {20.0}  # paho's loop_start: 1.0 s
    finally:
        broker.stop()
