"""The phone page: page weight, first render, the box's CPU with pages open, server memory.

The box runs in a worker process (``python -m bench.web WORKER PARAMS OUT``): the real
device loop on mock pins and real time, the page attached, one real-time hold. This
process drives Debian's headless Chromium (Playwright) at it: three open pages in the
"pages" runs, none in the "none" runs, alternating A B A B. CPU is the worker's
``time.process_time`` over the hold's wall time; memory is its VmRSS before the page
was attached and after the hold with the pages open.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.report import REPO, Bench, Figure

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = 3
CYCLES = 1  # off none one pages, this many times per run (the runs interleave: A B A B)


# ---- the worker (the box) ----------------------------------------------------------------


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def web_hold(hold_s: float, state_dir: str, page: bool = True) -> dict[str, Any]:
    """A box with the page attached (``page``; else the page off, the reference) through
    one real-time hold; waits for "go" on stdin. Every thread's wake-ups are counted.

    Prints {"url", "token"} on stdout first, so the driver can open pages."""
    import gc

    from bench.workers import _config_one_hold, thread_switches
    from device.apps.builder import build_box
    from device.box.clock import RealClock

    box = build_box(_config_one_hold(hold_s), mode="sim", clock=RealClock())
    gc.collect()
    rss_box = _rss_kb()
    from device.addons.web import attach

    handle: Any = None
    token = ""
    if page:
        handle = attach(box.port, "127.0.0.1:0", state_dir=Path(state_dir),
                        config_path=Path(state_dir) / "config.toml")
        token, _ = handle.server.web.store.pair(handle.code)
    rss_attached = _rss_kb()
    marks: dict[str, tuple[float, float]] = {}
    clients: list[int] = []
    switches: list[dict[str, int]] = []

    def on_event(event: Any) -> None:
        if event.kind == "state" and event.state == "setup":
            # in the set-up (however late the first press came): a double press to the hold
            box.loop.schedule(box.loop.clock.now() - box.loop.origin + 0.1,
                              box.commands.double_press)
        elif event.kind == "state" and event.state == "hold":
            marks["start"] = (time.monotonic(), time.process_time())
            switches.append(thread_switches())
        elif event.kind == "hold":
            marks["end"] = (time.monotonic(), time.process_time())
            switches.append(thread_switches())
            clients.append(len(handle.server.web.hub.clients) if handle else 0)
            box.loop.stop()

    box.bus.subscribe(on_event, ["state", "hold"], name="bench")
    print(json.dumps({"url": handle.url if handle else "", "token": token}), flush=True)
    if sys.stdin.readline().strip() != "go":
        raise RuntimeError("the driver did not say go")
    rss_pages = _rss_kb()
    box.loop.schedule(box.loop.clock.now() - box.loop.origin + 0.05, box.commands.press)
    try:
        box.loop.run(until=box.loop.clock.now() - box.loop.origin + hold_s + 30)
        rss_end = _rss_kb()
    finally:
        box.close()
    if "start" not in marks or "end" not in marks:
        raise RuntimeError("the hold did not start and end")
    (t0, c0), (t1, c1) = marks["start"], marks["end"]
    wakes = sum(switches[1][k] - switches[0].get(k, 0) for k in switches[1]) \
        if len(switches) == 2 else None
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "wakes_per_s": None if wakes is None else wakes / (t1 - t0),
            "rss_box_kb": rss_box, "rss_attached_kb": rss_attached,
            "rss_pages_kb": rss_pages, "rss_end_kb": rss_end,
            "streams_at_end": clients[0] if clients else 0}


# ---- the driver --------------------------------------------------------------------------


class _Worker:
    def __init__(self, hold_s: float, scratch: Path, env: dict[str, str],
                 page: bool = True) -> None:
        fd, out = tempfile.mkstemp(prefix="web-", suffix=".json", dir=scratch)
        os.close(fd)
        self.out = Path(out)
        state = tempfile.mkdtemp(prefix="web-state-", dir=scratch)
        params = json.dumps({"hold_s": hold_s, "state_dir": state, "page": page})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.web", "web_hold", params, out], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            raise RuntimeError("web worker failed: " + (self.proc.stderr.read()[-2000:]
                                                        if self.proc.stderr else ""))
        info = json.loads(line)
        self.url, self.token = info["url"], info["token"]

    def go(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        if self.proc.returncode != 0:
            raise RuntimeError(f"web worker exited {self.proc.returncode}: {err[-2000:]}")
        return json.loads(self.out.read_text())


def _context(browser: Any, url: str, token: str) -> Any:
    from device.addons.web.server import COOKIE

    context = browser.new_context(viewport={"width": 360, "height": 740})
    host = url.split("//", 1)[1].split("/", 1)[0]
    context.add_cookies([{"name": COOKIE, "value": token, "url": url, "httpOnly": True,
                          "sameSite": "Strict"}])
    context.host = host  # type: ignore[attr-defined]
    return context


def _page_weight(url: str, token: str) -> dict[str, int]:
    """Bytes on the wire (gzip accepted) of everything one page load fetches."""
    from device.addons.web.server import COOKIE

    host = url.split("//", 1)[1].split("/", 1)[0]
    paths = ["/", "/static/app.js", "/static/app.css", "/api/session", "/api/settings",
             "/api/history"]
    sizes = {}
    for path in paths:
        conn = http.client.HTTPConnection(host, timeout=10)
        conn.request("GET", path, headers={"Accept-Encoding": "gzip",
                                           "Cookie": f"{COOKIE}={token}"})
        resp = conn.getresponse()
        body = resp.read()
        sizes[path] = len(body) + sum(len(k) + len(v) + 4 for k, v in resp.getheaders())
        if resp.getheader("content-encoding") == "gzip":
            gzip.decompress(body)  # it really is gzip
        conn.close()
    return sizes


def _first_render(browser: Any, url: str, token: str, runs: int) -> dict[str, list[float]]:
    """ms from navigation start to the state shown, and to the first contentful paint."""
    shown, fcp = [], []
    for _ in range(runs):
        context = _context(browser, url, token)
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => document.getElementById('state').dataset.at !== '0'")
        at = page.evaluate("() => Number(document.getElementById('state').dataset.at)"
                           " - performance.timeOrigin")
        paint = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0]"
                              " || {}).startTime || null")
        shown.append(at)
        if paint is not None:
            fcp.append(paint)
        context.close()
    return {"state_shown_ms": shown, "fcp_ms": fcp}


def _spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.3g}, min {min(values):.3g}, "
            f"max {max(values):.3g} ({len(values)} runs)")


def bench_web(plan: Any, scratch: Path, env: dict[str, str], bench: Bench) -> None:
    """Page weight, first render, CPU with 3 pages vs none (A B A B), extra memory."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        bench.status, bench.error = "skipped", "pip install playwright (the test extra)"
        return
    if not os.path.exists(CHROMIUM):
        bench.status, bench.error = "skipped", "apt-get install chromium"
        return
    hold_s = 1.0 if plan.quick else 20.0
    # off: no page server at all; none: served, no page open; one: one page open;
    # pages: PAGES open. Interleaved: off none one pages, off none one pages, ...
    order = ["off", "none", "one", "pages"] * (1 if plan.quick else CYCLES)
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "none": [], "one": [], "pages": []}
    weight: dict[str, int] = {}
    render: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            for mode in order:
                worker = _Worker(hold_s, scratch, env, page=mode != "off")
                contexts = []
                if mode in ("one", "pages"):
                    if not weight:
                        weight = _page_weight(worker.url, worker.token)
                        render = _first_render(browser, worker.url, worker.token,
                                               1 if plan.quick else 7)
                    for _ in range(PAGES if mode == "pages" else 1):
                        context = _context(browser, worker.url, worker.token)
                        page = context.new_page()
                        page.goto(worker.url)
                        page.wait_for_selector("body[data-link=live]")
                        contexts.append(context)
                result = worker.go(timeout=hold_s + 60)
                runs[mode].append(result)
                for context in contexts:
                    context.close()
        finally:
            browser.close()
    bench.raw = {"order": order, "runs": runs, "weight_bytes": weight, "render": render}
    total_kb = sum(weight.values()) / 1024
    bench.figures.append(Figure(
        key="web.page_kb", label="page weight, all of one load, gzip on the wire",
        value=total_kb, unit="KiB", target_op="<=", target=100.0,
        note=", ".join(f"{k} {v / 1024:.1f}" for k, v in weight.items())))
    shown = render.get("state_shown_ms", [])
    fcp = render.get("fcp_ms", [])
    bench.figures.append(Figure(
        key="web.first_paint_ms", label="paired page: navigation -> first contentful paint",
        value=statistics.median(fcp) if fcp else None, unit="ms", target_op="<=",
        target=300.0, note=_spread(fcp) if fcp else ""))
    bench.figures.append(Figure(
        key="web.first_render_ms", label="paired page: navigation -> box state shown",
        value=statistics.median(shown) if shown else None, unit="ms",
        target_op="<=", target=300.0, note=_spread(shown) if shown else ""))
    off = [r["cpu_pct"] for r in runs["off"]]
    none = [r["cpu_pct"] for r in runs["none"]]
    one = [r["cpu_pct"] for r in runs["one"]]
    bench.figures.append(Figure(
        key="web.one_page_extra_pct", label=f"box CPU in a {hold_s:g} s hold: one page open "
        "minus the page off", value=statistics.median(one) - statistics.median(off),
        unit="% core", alt_label="page off (box CPU)", alt_value=statistics.median(off),
        target_op="<=", target=0.1, note=f"one: {_spread(one)}; off: {_spread(off)}"))

    def wakes(mode: str) -> float | None:
        values = [r["wakes_per_s"] for r in runs[mode] if r.get("wakes_per_s") is not None]
        return statistics.median(values) if values else None

    bench.figures.append(Figure(
        key="web.one_page_wakes_per_s", label="  wake-ups/s of every thread in that hold, "
        "one page open", value=wakes("one"), unit="/s", alt_label="page off",
        alt_value=wakes("off")))
    bench.figures.append(Figure(
        key="web.served_no_page_extra_pct", label="  served, no page open, minus the page off",
        value=statistics.median(none) - statistics.median(off), unit="% core"))
    pages = [r["cpu_pct"] for r in runs["pages"]]
    extra = statistics.median(pages) - statistics.median(none)
    bench.figures.append(Figure(
        key="web.cpu_extra_pct", label=f"box CPU in a {hold_s:g} s hold: {PAGES} pages open "
        "minus none", value=extra, unit="% core", alt_label="no page (box CPU)",
        alt_value=statistics.median(none), target_op="<=", target=0.5,
        note=f"pages: {_spread(pages)}; none: {_spread(none)}"))
    mem = [(r["rss_end_kb"] - r["rss_box_kb"]) / 1024 for r in runs["pages"]]
    bench.figures.append(Figure(
        key="web.extra_mb", label=f"server's extra memory (RSS after a hold with {PAGES} pages"
        " - box before attach)", value=max(mem), unit="MiB", target_op="<=", target=15.0,
        note=_spread(mem)))
    bench.notes.append(f"order {' '.join(order)} (off: no page server; none: served, no "
                       "page open; one: one page open and live; pages: three); a fresh box "
                       "process per run")
    if any(r["streams_at_end"] != PAGES for r in runs["pages"]):
        bench.notes.append("a page's live stream was not open at the end of a hold")


WORKERS = {"web_hold": web_hold}


def main(argv: list[str]) -> int:
    """``python -m bench.web WORKER PARAMS OUT``: run a worker, write its JSON to OUT."""
    name, params, out = argv[1], json.loads(argv[2]), argv[3]
    result = WORKERS[name](**params)
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench-web"
    sys.exit(main(sys.argv))
