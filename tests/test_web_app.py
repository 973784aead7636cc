# ruff: noqa: F811  (the fixtures browser, page and rig come from test_web_browser)
"""The phone page at the mat, in a real Chromium (issue 24): one screen in portrait and
landscape in every state, tabs, pictures that follow the voice, the app shell (manifest,
icons, a service worker caching only the shell), the wake lock, optional tones, the
history's reading help, and axe-core with 0 violations on every screen in both themes.

axe-core is the npm package, installed by ``.ci/run`` into ``.cache/axe`` (or named by
``AXE_CORE_JS``) and injected by Playwright. Screenshots go to ``docs/`` when
``SCREENSHOTS=docs`` (that is how the README's pictures are made), else to a temp folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.test_web_browser import (  # noqa: F401  (fixtures)
    PHONE,
    VIEWPORTS,
    Rig,
    browser,
    page,
    paired,
    rig,
)
from tests.tools import need

ROOT = Path(__file__).resolve().parent.parent
AXE = Path(os.environ.get("AXE_CORE_JS")
           or ROOT / ".cache/axe/node_modules/axe-core/axe.min.js")
AXE_INSTALL = "npm install --prefix .cache/axe --no-save axe-core@4 (as .ci/run does)"
DOCS = ROOT / "docs"
RUNNING = {"setup", "hold", "ask", "switch"}


def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/ when SCREENSHOTS=docs, else the test's temp folder."""
    return DOCS if os.environ.get("SCREENSHOTS") == "docs" else tmp_path


def new_page(browser: Browser, viewport: dict[str, int], scheme: str = "light",
             axe: bool = False) -> Page:
    """A fresh phone (no cookies). With ``axe`` the page's CSP is bypassed so axe-core can
    be injected; nothing else differs."""
    context = browser.new_context(viewport=viewport, device_scale_factor=1,
                                  color_scheme=scheme, bypass_csp=axe)  # type: ignore[arg-type]
    return context.new_page()


@pytest.fixture(params=list(VIEWPORTS))
def phone(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    page = new_page(browser, VIEWPORTS[request.param], axe=AXE.is_file())  # axe: the strap
    page.orientation = request.param  # type: ignore[attr-defined]
    yield page
    page.context.close()


def at_the_mat(page: Page) -> dict[str, Any]:
    """Where the things needed at the mat are, and whether the page scrolls."""
    return page.evaluate("""() => {
        const box = (id) => { const r = document.getElementById(id).getBoundingClientRect();
                              return [r.top, r.bottom, r.left, r.right, r.width * r.height]; };
        return {h: innerHeight, w: innerWidth,
                scroll: document.scrollingElement.scrollHeight - innerHeight,
                wide: document.scrollingElement.scrollWidth - innerWidth,
                state: box("state"), left: box("left"), breath: box("breath-shape"),
                phase: box("phase"), button: box("button"), pose: box("pose")};
    }""")


def assert_fits(page: Page, where: str) -> None:
    m = at_the_mat(page)
    assert m["scroll"] <= 0 and m["wide"] <= 0, f"{where}: the page scrolls: {m}"
    for name in ("state", "left", "breath", "phase", "button"):
        top, bottom, left, right, area = m[name]
        assert area > 0, f"{where}: {name} not shown: {m}"
        assert top >= 0 and bottom <= m["h"] and left >= 0 and right <= m["w"], \
            f"{where}: {name} is off the screen: {m}"
    assert m["button"][1] - m["button"][0] >= 48  # a thumb-sized target


def state_of(page: Page) -> str:
    return page.get_attribute("#state", "data-state") or ""


# ---- one screen at the mat ------------------------------------------------------------


def test_state_time_breath_and_button_fit_one_screen_in_every_state(
        phone: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Portrait 390x844 and landscape 844x390, with the strap shown (the fullest screen):
    every state from idle to done without scrolling."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    rig = Rig(tmp_path, sensor=True)
    try:
        orientation = phone.orientation  # type: ignore[attr-defined]
        paired(phone, rig)
        expect(phone.locator("#strap")).to_be_visible()
        seen: list[str] = []
        out = shots(tmp_path)
        for _ in range(30):
            state = state_of(phone)
            if state not in seen:
                seen.append(state)
                if state == "hold":
                    rig.box.strap.set_level(5.0)
                    expect(phone.locator("#phase")).to_have_text(re.compile("breathe|hold"))
                    expect(phone.locator("#left")).to_have_text(re.compile(r"\d:\d\d|\d+ s"))
                    expect(phone.locator("#tension")).not_to_have_text(re.compile("^-?0.0"))
                    phone.wait_for_timeout(500)  # a set-up line said late (the safety line
                    # after a skip) must not bring a set-up picture back into the hold
                    expect(phone.locator("#pose")).to_have_attribute("data-pose", "hold")
                    need(AXE.is_file(), f"axe-core ({AXE})", AXE_INSTALL)
                    _axe(phone, f"{orientation} hold with the strap")  # the meter too
                assert_fits(phone, f"{orientation} {state}")
                if state == "setup":  # the picture and its line, for the screenshot
                    expect(phone.locator("#said")).not_to_contain_text("pair your phone")
                if state in ("idle", "setup", "hold"):
                    phone.screenshot(path=str(out / f"phone-{state}-{orientation}.png"))
            if state == "done":
                break
            if state == "setup":
                rig.box.commands.double_press()  # straight to the hold
            elif state in ("idle", "hold", "switch", "ask"):
                rig.box.commands.press()  # start; end the hold early; next leg; answer
            expect(phone.locator("#state")).not_to_have_attribute("data-state", state,
                                                                  timeout=15_000)
        assert {"idle", "setup", "hold", "ask", "switch", "done"} <= set(seen), seen
    finally:
        rig.stop_box()


def test_tabs_are_views_of_their_own_and_work_from_the_keyboard(page: Page, rig: Rig) -> None:
    paired(page, rig)
    expect(page.locator("#now")).to_be_visible()
    expect(page.locator("#history")).to_be_hidden()
    expect(page.locator("#settings")).to_be_hidden()
    page.locator("#tab-now").focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-history")).to_be_focused()
    expect(page.locator("#tab-history")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#history")).to_be_visible()
    expect(page.locator("#now")).to_be_hidden()
    page.keyboard.press("End")
    expect(page.locator("#settings")).to_be_visible()
    page.keyboard.press("Home")
    expect(page.locator("#now")).to_be_visible()
    # from the tab bar, Tab reaches the big button; Space presses it
    page.keyboard.press("Tab")
    expect(page.locator("#button")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.locator("#state")).to_have_attribute("data-state", re.compile("setup|hold"))
    assert page.evaluate("location.hash") == "#now"


def test_pairing_names_the_simulators_code_command(page: Page, rig: Rig) -> None:
    page.goto(rig.url)
    expect(page.locator("#pairing")).to_be_visible()
    expect(page.locator("#code-command")).to_have_text("stretch-companion web-code --sim")


# ---- pictures -------------------------------------------------------------------------


def test_pictures_follow_the_setup_steps_as_the_voice_says_them(page: Page, rig: Rig) -> None:
    paired(page, rig)
    expect(page.locator("#pose")).to_have_attribute("data-pose", "lie")
    page.evaluate("""() => { window.poses = [];
        new MutationObserver(() => window.poses.push(
            [document.getElementById("pose").dataset.pose,
             document.getElementById("said").textContent]))
          .observe(document.getElementById("pose"), {attributes: true}); }""")
    rig.box.commands.press()  # start
    expect(page.locator("#state")).to_have_attribute("data-state", "setup")
    for _ in range(14):  # each press moves on one step, as the voice says the next line
        if state_of(page) == "hold":
            break
        before = page.locator("#said").inner_text()
        rig.box.commands.press()
        expect(page.locator("#said")).not_to_have_text(before, timeout=10_000)
        page.wait_for_timeout(250)  # longer than a double press (0.3 s of box time / 3)
    expect(page.locator("#state")).to_have_attribute("data-state", "hold", timeout=20_000)
    poses: list[list[str]] = page.evaluate("window.poses")
    names = [p for p, _ in poses]
    order = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]
    assert order == ["strap", "raise", "long", "firm", "hold"], poses
    said = dict(reversed([(p, t) for p, t in poses]))  # the first line each picture came with
    assert "strap around the ball" in said["strap"]
    assert "ninety degrees" in said["raise"]
    assert "toes pointing straight up" in said["long"]
    title = page.locator("#pose-title").text_content() or ""
    assert "hold" in title.lower()
    size = len(re.search(r'<svg id="pose".*?</svg>', page.content(), re.S).group(0))  # type: ignore[union-attr]
    print(f"the six pictures: {size} bytes of SVG in the page")
    assert size < 4000  # small in bytes


# ---- the phone as part of the session ---------------------------------------------------


def test_wake_lock_is_held_in_a_session_and_released_after(page: Page, rig: Rig) -> None:
    page.add_init_script("""(() => {
        window.wakeLog = [];
        const real = navigator.wakeLock.request.bind(navigator.wakeLock);
        navigator.wakeLock.request = async (type) => {
            const lock = await real(type);   // the real API: headless Chromium grants it
            window.wakeLog.push("request");
            lock.addEventListener("release", () => window.wakeLog.push("release"));
            return lock;
        };
    })()""")
    paired(page, rig)
    expect(page.locator("body")).to_have_attribute("data-wake", "off")
    page.locator("#button").click()
    expect(page.locator("body")).to_have_attribute("data-wake", "held")
    expect(page.locator("#wake")).to_have_text("kept on")
    rig.box.commands.long_press()
    expect(page.locator("#state")).to_have_attribute("data-state", re.compile("cancelled|idle"))
    expect(page.locator("body")).to_have_attribute("data-wake", "released")
    assert page.evaluate("window.wakeLog") == ["request", "release"]


def test_tones_are_off_by_default_and_mark_the_hold_and_the_breath_when_on(
        page: Page, rig: Rig) -> None:
    paired(page, rig)
    page.locator("#button").click()
    expect(page.locator("#state")).to_have_attribute("data-state", "setup")
    rig.box.commands.double_press()
    expect(page.locator("#state")).to_have_attribute("data-state", "hold")
    page.wait_for_timeout(1500)
    assert page.get_attribute("body", "data-tones") is None  # silent unless chosen
    assert page.evaluate("localStorage.getItem('sc.tones')") is None
    rig.box.commands.long_press()
    expect(page.locator("#state")).to_have_attribute("data-state", "idle", timeout=10_000)
    page.click("#tab-settings")
    page.get_by_role("switch", name="Tones from this phone").check()
    page.click("#tab-now")
    page.locator("#button").click()
    expect(page.locator("#state")).to_have_attribute("data-state", "setup")
    rig.box.commands.double_press()
    expect(page.locator("body")).to_have_attribute("data-tone", "hold-start")
    # 4 s in, 6 s out at 3x: a turn of the breath within about 3.5 s
    expect(page.locator("body")).to_have_attribute("data-tone", re.compile("breath-(in|out)"),
                                                   timeout=8000)
    rig.box.commands.press()  # end the hold
    expect(page.locator("body")).to_have_attribute("data-tone", "hold-end")
    page.reload()  # the choice stays on this phone
    page.click("#tab-settings")
    expect(page.get_by_role("switch", name="Tones from this phone")).to_be_checked()


# ---- the app shell ------------------------------------------------------------------


def test_manifest_icons_and_a_service_worker_that_caches_only_the_shell(
        page: Page, rig: Rig) -> None:
    paired(page, rig)
    manifest = page.evaluate("""async () => {
        const link = document.querySelector("link[rel=manifest]").href;
        const m = await (await fetch(link)).json();
        m.loaded = [];
        for (const icon of m.icons) {
            const r = await fetch(icon.src);
            const blob = await r.blob();
            m.loaded.push([icon.src, r.status, r.headers.get("content-type"), blob.size]);
        }
        return m;
    }""")
    assert manifest["display"] == "standalone" and manifest["start_url"] == "/"
    assert {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}
    for src, status, kind, size in manifest["loaded"]:
        assert status == 200 and kind.startswith("image/") and size > 200, (src, kind, size)
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.reload()  # now the worker sees every request of the page
    expect(page.locator("body")).to_have_attribute("data-link", "live")
    assert page.evaluate("navigator.serviceWorker.controller !== null")
    page.click("#tab-history")  # the history and its chart: data, never cached
    expect(page.locator("#chart svg")).to_be_visible()
    page.evaluate("""async () => {
        await new Promise((done) => {  // a data: image (the page's CSP allows those)
            const img = new Image();
            img.onload = img.onerror = done;
            img.src = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E";
        });
        await fetch("/api/state");
        await fetch("/api/settings");
    }""")
    cached = page.evaluate("""async () => {
        const out = [];
        for (const name of await caches.keys()) {
            for (const req of await (await caches.open(name)).keys()) out.push(req.url);
        }
        return out;
    }""")
    paths = sorted(re.sub(r"^https?://[^/]+", "", u) for u in cached)
    print("cached:", paths)
    assert paths, "the shell was not cached"
    assert not [u for u in cached if u.startswith("data:") or "/api/" in u], cached
    assert set(paths) <= {"/", "/static/app.js", "/static/app.css", "/static/icon.svg",
                          "/static/icon-192.png", "/manifest.webmanifest"}, paths


# ---- history ------------------------------------------------------------------------


def _history(rig: Rig, days: int) -> None:
    from device.core.records import HoldRecord, SessionRecord
    from device.store.sqlite import History

    now = datetime.now(UTC)
    with History(rig.history_path) as h:
        for d in range(days):
            start = now - timedelta(days=d, hours=2)
            if d % 4 == 3:  # a session stopped 12 s into its first hold
                holds: tuple[HoldRecord, ...] = (
                    HoldRecord("right", 1, 90, 12, "cancelled"),)
                h.record(SessionRecord(start, start + timedelta(minutes=1), "cancelled",
                                       "hamstring", holds))
                continue
            holds = (HoldRecord("right", 1, 90, 90, "complete", tightness="tight"),
                     HoldRecord("left", 1, 90, 80 + d, "complete"))
            h.record(SessionRecord(start, start + timedelta(minutes=6), "complete",
                                   "hamstring", holds))


def test_history_has_a_legend_a_fitted_axis_and_stopped_holds_as_marks(
        page: Page, rig: Rig) -> None:
    _history(rig, 10)
    paired(page, rig)
    page.click("#tab-history")
    legend = page.locator("#legend")
    expect(legend).to_contain_text("a complete session")
    expect(legend).to_contain_text("started, not finished")
    expect(page.locator("#chart svg path.mark")).to_have_count(2 + 1)  # 2 stopped + legend
    dots = page.locator("#chart svg circle.dot.right")
    expect(dots).to_have_count(8 + 1)
    xs = [float(dots.nth(i).get_attribute("cx") or 0) for i in range(8)]  # the legend dot is last
    assert min(xs) < 120, xs  # ten days spread over the axis, not squeezed to the right
    ys = [float(dots.nth(i).get_attribute("cy") or 0) for i in range(8)]  # the legend dot is last
    assert len(set(ys)) == 1  # every drawn right hold is 90 s: the 12 s stops are not in it


# ---- accessibility ------------------------------------------------------------------


def _axe(page: Page, where: str) -> None:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ["violations"]});
        return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(" ") + " " + n.failureSummary)}));
    }""")
    assert result == [], f"{where}: " + json.dumps(result, indent=1)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("orientation", list(VIEWPORTS))
def test_axe_finds_no_violation_on_any_screen(browser: Browser, rig: Rig,
                                              orientation: str, scheme: str) -> None:
    need(AXE.is_file(), f"axe-core ({AXE})", AXE_INSTALL)
    _history(rig, 10)
    page = new_page(browser, VIEWPORTS[orientation], scheme, axe=True)
    try:
        where = f"{orientation} {scheme}"
        page.goto(rig.url)
        expect(page.locator("#pairing")).to_be_visible()
        _axe(page, f"{where} pairing")
        paired(page, rig)
        _axe(page, f"{where} now, idle")
        rig.box.commands.press()
        expect(page.locator("#state")).to_have_attribute("data-state", "setup")
        rig.box.commands.double_press()
        expect(page.locator("#state")).to_have_attribute("data-state", "hold")
        _axe(page, f"{where} now, hold")
        page.click("#tab-history")
        expect(page.locator("#chart svg")).to_be_visible()
        _axe(page, f"{where} history")
        page.click("#tab-settings")
        page.locator("#f-session\\.hold_seconds").fill("30")
        page.click("#save")
        expect(page.locator("#settings-msg")).to_contain_text("Not saved")
        _axe(page, f"{where} settings with an error")
    finally:
        page.context.close()


def test_text_at_200_percent_loses_nothing(browser: Browser, rig: Rig) -> None:
    page = new_page(browser, PHONE)
    try:
        paired(page, rig)
        page.evaluate("document.documentElement.style.fontSize = '200%'")  # as a 200 % text setting
        for tab in ("now", "history", "settings"):
            page.click(f"#tab-{tab}")
            wide = page.evaluate("document.scrollingElement.scrollWidth - innerWidth")
            assert wide <= 0, f"{tab}: {wide} px cut off at the side"
        page.click("#tab-now")
        size = page.evaluate("parseFloat(getComputedStyle(document.getElementById('state'))"
                             ".fontSize)")
        assert size >= 44  # 1.5 rem at 200 %: the text did grow
        button = page.locator("#button")
        button.scroll_into_view_if_needed()
        expect(button).to_be_in_viewport()
        said = page.locator("#said")
        expect(said).to_be_visible()
    finally:
        page.context.close()


def test_history_and_settings_screenshots_for_the_readme(
        browser: Browser, rig: Rig, tmp_path: Path) -> None:
    _history(rig, 10)
    page = new_page(browser, PHONE, "dark")
    try:
        paired(page, rig)
        page.click("#tab-history")
        expect(page.locator("#chart svg")).to_be_visible()
        out = shots(tmp_path)
        page.screenshot(path=str(out / "phone-history-portrait.png"))
        page.click("#tab-settings")
        expect(page.locator("#save")).to_be_visible()
        page.screenshot(path=str(out / "phone-settings-portrait.png"))
        assert (out / "phone-history-portrait.png").stat().st_size > 5000
    finally:
        page.context.close()

