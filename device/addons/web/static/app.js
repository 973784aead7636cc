// Stretch Companion phone page. No libraries, nothing from the network but the box.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = "";
let breath = null;          // {inhale, hold_in, exhale, hold_out}
let longPressS = 2;
let source = null;          // the EventSource
let view = null;            // the latest read model
let viewAt = 0;             // performance.now() when it arrived
let cycleT0 = null;         // performance.now() at the start of the current breath
let retryTimer = null;

const now = () => performance.timeOrigin + performance.now();
const RUNNING = ["setup", "hold", "ask", "switch"];
const STATE_WORDS = { idle: "Ready", setup: "Set-up", hold: "Hold", ask: "How tight?",
  switch: "Switch legs", done: "Done", cancelled: "Stopped" };

async function api(path, options = {}) {
  const opts = { credentials: "same-origin", ...options };
  if (opts.body !== undefined) {
    opts.method = opts.method || "POST";
    opts.headers = { "Content-Type": "application/json", "X-CSRF-Token": csrf };
    opts.body = JSON.stringify(opts.body);
  }
  const response = await fetch(path, opts);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return { status: response.status, data };
}

function setLink(text, live) {
  const link = $("link");
  link.textContent = text;
  link.classList.toggle("live", live);
  document.body.dataset.link = live ? "live" : "down";
}

// ---- tabs: Now, History, Settings, each a view of its own ---------------------------

const TABS = ["now", "history", "settings"];

function selectTab(name, focus) {
  if (!TABS.includes(name) || $(`tab-${name}`).hidden) name = "now";
  TABS.forEach((t) => {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(t).hidden = !on;
  });
  document.body.dataset.tab = name;
  if (focus) $(`tab-${name}`).focus();
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  $("main").scrollTop = 0;
  window.scrollTo(0, 0);
}

TABS.forEach((t, i) => {
  const tab = $(`tab-${t}`);
  tab.addEventListener("click", () => selectTab(t, false));
  tab.addEventListener("keydown", (ev) => {
    const visible = TABS.filter((x) => !$(`tab-${x}`).hidden);
    const at = visible.indexOf(t);
    let next = null;
    if (ev.key === "ArrowRight") next = visible[(at + 1) % visible.length];
    else if (ev.key === "ArrowLeft") next = visible[(at - 1 + visible.length) % visible.length];
    else if (ev.key === "Home") next = visible[0];
    else if (ev.key === "End") next = visible[visible.length - 1];
    if (next) { ev.preventDefault(); selectTab(next, true); }
  });
  void i;
});
window.addEventListener("hashchange", () => selectTab(location.hash.slice(1), false));

// ---- pairing -------------------------------------------------------------------------

function showPairing(message, command) {
  if (source) { source.close(); source = null; }
  $("app").hidden = true;
  $("tabs").hidden = true;
  $("pairing").hidden = false;
  if (command) $("code-command").textContent = command;
  setLink("not paired", false);
  if (message) $("pair-msg").textContent = message;
  api("/api/pair/announce", { body: {} });
}

$("pair-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const code = $("code").value.trim();
  if (!/^[0-9]{6}$/.test(code)) {
    $("pair-msg").textContent = "The code is 6 digits.";
    return;
  }
  const { status, data } = await api("/api/pair", { body: { code } });
  if (status === 200) {
    $("pair-msg").textContent = "";
    $("code").value = "";
    start();
  } else {
    $("pair-msg").textContent = (data && data.error) || `Pairing failed (${status}).`;
  }
});

$("say-code").addEventListener("click", async () => {
  const { data } = await api("/api/pair/announce", { body: {} });
  $("pair-msg").textContent = data && data.press ?
    "Press the box's button once: it will say the code." :
    "The box is in a session; ask again when it is idle.";
});

// ---- pictures: the set-up steps and the hold, as the voice says them -----------------

const POSES = {
  lie: "Lying on the back, both knees bent, feet flat on the floor",
  strap: "The strap looped around the ball of the foot, one end in each hand",
  raise: "The leg straight, raised toward ninety degrees on the strap",
  long: "The other leg long on the floor, toes pointing up",
  firm: "Kneecap drawn up, front of the thigh firm, the other groin pressed down",
  hold: "The hold: leg up on the strap, breathing slowly",
};
// The voice's line keys (as the box's speak events carry them) -> the picture.
const POSE_OF_KEY = [
  [/^setup\.(intro|safety|press_hint|1)$/, "lie"],
  [/^setup\.2$/, "strap"], [/^setup\.[34]$/, "raise"], [/^setup\.5$/, "long"],
  [/^setup\.([6-9]|settle|ready)$/, "firm"],
  [/^setup\.switch\.1$/, "strap"], [/^setup\.switch\.[23]$/, "raise"],
  [/^setup\.switch\.4$/, "long"], [/^setup\.switch\.5$/, "firm"],
  [/^setup\.stretch\.1$/, "long"], [/^setup\.stretch\.2$/, "firm"],
  [/^hold\./, "hold"],
];
const POSE_OF_STATE = { idle: "lie", setup: "lie", hold: "hold", switch: "lie", done: "lie",
  cancelled: "lie" };

function showPose(name) {
  if (!POSES[name]) return;
  const svg = $("pose");
  if (svg.dataset.pose === name) return;
  svg.dataset.pose = name;
  svg.querySelectorAll("g.p").forEach((g) => {
    if (g.dataset.p === name) g.removeAttribute("hidden"); else g.setAttribute("hidden", "");
  });
  $("pose-title").textContent = POSES[name];
}

let setupStep = null;  // the set-up step the voice is on (1-based), from its line's key

function poseForKey(key) {
  if (!view) return;
  const step = /^setup\.(?:switch\.)?(\d+)$/.exec(key || "");
  if (view.state === "setup" && step) { setupStep = Number(step[1]); tickLeft(); }
  if (view.state !== "setup") return;  // a hold shows the hold, whatever is being said
  const hit = POSE_OF_KEY.find(([re]) => re.test(key || ""));
  if (hit) showPose(hit[1]);
}

// ---- live state ----------------------------------------------------------------------

function fmtS(s) {
  if (s === null || s === undefined) return "–";
  const t = Math.max(0, Math.ceil(s));
  return t >= 60 ? `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}` : `${t} s`;
}

function voiceWords(v) {
  const status = v.voice_status || "–";
  return v.voice_off_reason ? `${status} (${v.voice_off_reason})` : status;
}

function render(v) {
  const prev = view;
  view = v;
  viewAt = performance.now();
  const stateEl = $("state");
  if (!prev || prev.state !== v.state) {
    stateEl.textContent = STATE_WORDS[v.state] || v.state;
    stateEl.dataset.state = v.state;
    stateEl.dataset.at = String(now());
    if (POSE_OF_STATE[v.state]) showPose(POSE_OF_STATE[v.state]);
    setupStep = null;
    if (prev && prev.state !== "hold" && v.state === "hold") tone("hold-start");
    if (prev && prev.state === "hold" && v.state !== "hold") tone("hold-end");
    syncWake();
  }
  const idle = !RUNNING.includes(v.state);
  $("leg").textContent = v.leg ? `${v.leg} leg` : "–";
  $("round").textContent = idle ? "–" : `round ${v.round} of ${v.rounds}`;
  $("where").hidden = idle;
  $("planned").textContent = fmtS(v.hold_planned_s);
  $("next-hold").textContent = fmtS(v.next_hold_s);
  $("plan").hidden = idle || ($("planned").textContent === "–" && $("next-hold").textContent === "–");
  if (cycleT0 === null) {
    $("phase").textContent = { in: "breathe in", full: "hold full", out: "breathe out",
      empty: "hold empty" }[v.breath_phase] || (v.state === "hold" ? "breathe" : "–");
  }
  $("sensor").textContent = v.sensor_status || "–";
  $("voice").textContent = voiceWords(v);
  const clash = v.box_clash || "";
  $("clash").hidden = !clash;
  $("clash").textContent = clash;
  const strap = v.sensor_status && v.sensor_status !== "absent";
  $("strap").hidden = !strap;
  if (strap) renderStrap(v);
  const lines = v.spoken || [];
  const said = lines.length ? lines[lines.length - 1] :
    (idle ? "Lie on your back with the strap to hand, then tap Start." : "");
  if ($("said").textContent !== said) $("said").textContent = said;
  $("button-label").textContent = idle ? "Start" : "Press";
  syncBreath(v);
  tickLeft();
}

// The strap: its reading on a meter whose good range is the hold's band, and the ceiling.
function renderStrap(v) {
  const units = v.tension_units || "";
  const num = (x) => x !== null && x !== undefined;
  const meter = $("tension-meter");
  const ceiling = num(v.tension_ceiling) ? Number(v.tension_ceiling) : null;
  const top = Math.max(ceiling !== null ? ceiling : 20, num(v.tension) ? Number(v.tension) : 0);
  meter.max = top;
  if (num(v.tension)) {
    $("tension").textContent = `${Number(v.tension).toFixed(1)} ${units}`;
    meter.value = Math.max(0, Number(v.tension));
  }
  const parts = [];
  if (num(v.tension_low)) {
    const low = Number(v.tension_low);
    const high = num(v.tension_high) ? Number(v.tension_high) : null;
    meter.low = low;
    meter.high = high !== null ? high : (ceiling !== null ? ceiling : top);
    meter.optimum = (meter.low + meter.high) / 2;
    parts.push(high !== null ? `aim for ${low.toFixed(1)}–${high.toFixed(1)} ${units}, steady` :
      `aim for ${low.toFixed(1)} ${units} or more, steady`);
  }
  if (ceiling !== null) parts.push(`ceiling ${ceiling.toFixed(1)} ${units}`);
  $("tension-band").textContent = parts.length ? parts.join(" · ") : "–";
}

function tickLeft() {
  if (!view) return;
  let left = view.hold_left_s;
  if (left !== null && left !== undefined && view.hold_clock_running !== false) {
    left -= (performance.now() - viewAt) / 1000;
  }
  // in a hold: the time left; before it: the hold to come; idle: the next session's hold
  let label = "left";
  if (view.state === "setup") {
    $("left").textContent = setupStep ? `Step ${setupStep}` : "Get ready";
    $("left-label").textContent = "";
    return;
  }
  if (left === null || left === undefined) {
    left = view.state === "idle" ? view.next_hold_s : view.hold_planned_s;
    label = view.state === "idle" ? "a leg, next session" : "hold to come";
    if (left === null || left === undefined) label = "";
  }
  $("left").textContent = fmtS(left);
  $("left-label").textContent = label;
}

// The breathing shape: the box sends how far into the breath it is (breath_s) with each
// update; the page animates on its own from the pattern, no 50 Hz stream.
function syncBreath(v) {
  if (!breath || v.breath_s === null || v.breath_s === undefined) { cycleT0 = null; return; }
  cycleT0 = performance.now() - v.breath_s * 1000;
}

// [level 0..1, phase 0 in / 1 full / 2 out / 3 empty] at t s into the breath
function breathAt(t) {
  const b = breath;
  const period = b.inhale + b.hold_in + b.exhale + b.hold_out;
  t = ((t % period) + period) % period;
  const ramp = (x) => (1 - Math.cos(Math.PI * x)) / 2;
  if (t < b.inhale) return [ramp(t / b.inhale), 0];
  t -= b.inhale;
  if (t < b.hold_in) return [1, 1];
  t -= b.hold_in;
  if (t < b.exhale) return [1 - ramp(t / b.exhale), 2];
  return [0, 3];
}

const PHASE_WORDS = ["breathe in", "hold full", "breathe out", "hold empty"];
let lastPhase = null;

function frame() {
  const shape = $("breath-shape");
  let level = 0;
  if (cycleT0 !== null && breath) {
    const [lv, phase] = breathAt((performance.now() - cycleT0) / 1000);
    level = lv;
    if (phase !== lastPhase) {
      if (lastPhase !== null && view && view.state === "hold") {
        if (phase === 0) tone("breath-in");
        if (phase === 2) tone("breath-out");
      }
      lastPhase = phase;
      $("phase").textContent = PHASE_WORDS[phase];
    }
  } else {
    lastPhase = null;
    if (view) level = view.light || 0;
  }
  shape.style.transform = `scale(${(0.25 + 0.75 * level).toFixed(3)})`;
  requestAnimationFrame(frame);
}

function connect() {
  if (source) source.close();
  clearTimeout(retryTimer);
  source = new EventSource("/api/events");
  source.onopen = () => setLink("live", true);
  source.onmessage = (msg) => {
    const data = JSON.parse(msg.data);
    if (data.breath) breath = { ...breath, ...data.breath };
    setLink("live", true);
    const kind = data.event && data.event.kind;
    render(data.view);
    if (kind === "speak") poseForKey(data.event.key);
    if (kind === "session" || kind === "history") loadHistory();
  };
  source.onerror = () => {
    setLink("reconnecting…", false);
    if (source.readyState === EventSource.CLOSED) {
      retryTimer = setTimeout(start, 1500);   // the box said no (or restarted): ask again
    }
  };
}

// ---- the phone as part of the session: screen kept on, optional tones ------------------

let wakeLock = null;
let wakeBusy = false;

function setWake(state) {
  document.body.dataset.wake = state;
  $("wake").textContent = { held: "kept on", released: "normal", off: "normal",
    unavailable: "may sleep (needs https)", refused: "may sleep (refused)" }[state] || state;
}

async function syncWake() {
  if (wakeBusy) return;
  wakeBusy = true;
  try {
    const want = view && RUNNING.includes(view.state) && $("keep-awake").checked &&
      document.visibilityState === "visible";
    if (want && !wakeLock) {
      if (!("wakeLock" in navigator)) { setWake("unavailable"); return; }
      try {
        const lock = await navigator.wakeLock.request("screen");
        wakeLock = lock;
        lock.addEventListener("release", () => {
          if (wakeLock === lock) { wakeLock = null; setWake("released"); }
        });
        setWake("held");
      } catch (e) {
        setWake("refused");
      }
    } else if (!want && wakeLock) {
      const lock = wakeLock;
      wakeLock = null;
      try { await lock.release(); } catch (e) { /* already gone */ }
      setWake("released");
    } else if (!wakeLock && !document.body.dataset.wake) {
      setWake("wakeLock" in navigator ? "off" : "unavailable");
    }
  } finally {
    wakeBusy = false;
  }
  // the state may have moved on while the request was out
  const want = view && RUNNING.includes(view.state) && $("keep-awake").checked;
  if (Boolean(want) !== Boolean(wakeLock) && document.visibilityState === "visible") syncWake();
}

$("keep-awake").addEventListener("change", () => {
  localStorage.setItem("sc.awake", $("keep-awake").checked ? "on" : "off");
  syncWake();
});

let audio = null;
let toneCount = 0;
const TONES = {  // [Hz, start s, length s]
  "hold-start": [[660, 0, 0.16], [880, 0.2, 0.3]],
  "hold-end": [[880, 0, 0.16], [587, 0.2, 0.45]],
  "breath-in": [[523, 0, 0.14]],
  "breath-out": [[392, 0, 0.14]],
};

function tonesOn() { return $("tones").checked; }

function ensureAudio() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  if (!audio) audio = new Ctx();
  if (audio.state === "suspended") audio.resume();
  return audio;
}

function tone(name) {
  if (!tonesOn()) return;
  const ctx = ensureAudio();
  if (!ctx) return;
  const t0 = ctx.currentTime + 0.02;
  for (const [hz, at, len] of TONES[name]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = hz;
    gain.gain.setValueAtTime(0.0001, t0 + at);
    gain.gain.exponentialRampToValueAtTime(0.25, t0 + at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + len);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0 + at);
    osc.stop(t0 + at + len + 0.02);
  }
  toneCount += 1;
  document.body.dataset.tone = name;
  document.body.dataset.tones = String(toneCount);
}

$("tones").addEventListener("change", () => {
  localStorage.setItem("sc.tones", $("tones").checked ? "on" : "off");
  if ($("tones").checked) ensureAudio();  // a tap: the browser lets sound start now
});
// after a reload, the first touch anywhere wakes the sound (browsers need a gesture)
document.addEventListener("pointerdown", () => { if (tonesOn()) ensureAudio(); }, { once: true });

// ---- the button ----------------------------------------------------------------------

const btn = $("button");
let downAt = null;
let longTimer = null;

function buttonDown() {
  if (downAt !== null) return;
  downAt = performance.now();
  btn.style.transitionDuration = `${longPressS}s`;
  btn.classList.add("holding");
  longTimer = setTimeout(() => {
    longTimer = null;
    buttonReset();
    api("/api/press", { body: { kind: "long" } });
  }, longPressS * 1000);
}

function buttonUp(send) {
  if (downAt === null) return;
  const wasPending = longTimer !== null;
  buttonReset();
  if (wasPending && send) api("/api/press", { body: { kind: "short" } });
}

function buttonReset() {
  clearTimeout(longTimer);
  longTimer = null;
  downAt = null;
  btn.classList.remove("holding");
  btn.style.transitionDuration = "0s";
}

btn.addEventListener("pointerdown", (ev) => {
  btn.setPointerCapture(ev.pointerId);
  buttonDown();
});
btn.addEventListener("pointerup", () => buttonUp(true));
btn.addEventListener("pointercancel", () => buttonUp(false));
btn.addEventListener("contextmenu", (ev) => ev.preventDefault());
btn.addEventListener("keydown", (ev) => {
  if ((ev.key === " " || ev.key === "Enter") && !ev.repeat) { ev.preventDefault(); buttonDown(); }
});
btn.addEventListener("keyup", (ev) => {
  if (ev.key === " " || ev.key === "Enter") { ev.preventDefault(); buttonUp(true); }
});
btn.addEventListener("click", (ev) => ev.preventDefault());

// ---- history -------------------------------------------------------------------------

async function loadHistory() {
  const { status, data } = await api("/api/history");
  if (status !== 200) return;
  $("streak").textContent = `${data.calendar.streak} day${data.calendar.streak === 1 ? "" : "s"}`;
  $("count").textContent = String(data.sessions);
  const body = $("calendar").tBodies[0];
  const words = ["no session", "started, not finished", "a complete session"];
  body.replaceChildren(...data.calendar.weeks.map((week) => {
    const tr = document.createElement("tr");
    const th = document.createElement("td");
    th.className = "week";
    th.textContent = week.week.slice(5);
    tr.append(th);
    week.days.forEach((mark) => {
      const td = document.createElement("td");
      td.className = mark < 0 ? "future" : `d${mark}`;
      if (mark >= 0) {
        const sr = document.createElement("span");
        sr.className = "sr";
        sr.textContent = words[mark];
        td.append(sr);
      }
      if (mark === 2 || mark === 1) {
        const sign = document.createElement("span");
        sign.setAttribute("aria-hidden", "true");
        sign.textContent = mark === 2 ? "✓" : "•";
        td.append(sign);
      }
      tr.append(td);
    });
    return tr;
  }));
  $("recent").replaceChildren(...data.recent.map((s) => {
    const li = document.createElement("li");
    const legs = ["right", "left"].filter((l) => s.legs[l].held_s !== null)
      .map((l) => `${l} ${Math.round(s.legs[l].held_s)} s` +
        (s.legs[l].steadiness !== null ? ` (steady ${s.legs[l].steadiness})` : "") +
        (s.legs[l].tightness ? `, felt ${s.legs[l].tightness.replace("_", " ")}` : "") +
        (s.legs[l].index != null ? `, index ${Math.round(s.legs[l].index)}` : "") +
        (s.legs[l].relax_30 != null ? `, eased ${Math.round(s.legs[l].relax_30)} % by 30 s` : ""));
    const asym = s.asymmetry != null ? `, right-left ${s.asymmetry > 0 ? "+" : ""}${Math.round(s.asymmetry)} %` : "";
    li.textContent = `${s.started}: ${s.outcome}${legs.length ? ", " + legs.join(", ") : ""}${asym}`;
    return li;
  }));
  const svg = await fetch("/api/history/chart.svg", { credentials: "same-origin" });
  if (svg.ok) {
    const doc = new DOMParser().parseFromString(await svg.text(), "image/svg+xml");
    const node = doc.documentElement;
    if (node && node.nodeName === "svg") $("chart").replaceChildren(document.importNode(node, true));
  }
}

// ---- settings: grouped, real controls, the message at the field and beside Save --------

let fields = [];

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.entries(props).forEach(([k, v]) => {
    if (k === "class") node.className = v;
    else if (k.startsWith("aria-") || k === "role" || k === "for") node.setAttribute(k, v);
    else node[k] = v;
  });
  node.append(...children);
  return node;
}

function shown(f, value) {
  if (f.key === "voice.volume") return `${Math.round(Number(value) * 100)} %`;
  return f.unit ? `${value} ${f.unit}` : String(value);
}

function stepDecimals(step) {
  const text = String(step);
  return text.includes(".") ? text.split(".")[1].length : 0;
}

function control(f) {
  const id = `f-${f.key}`;
  const described = `m-${f.key} d-${f.key}`;
  if (f.control === "toggle") {
    return el("input", { type: "checkbox", id, name: f.key, role: "switch",
      checked: Boolean(f.value), "aria-describedby": described });
  }
  if (f.control === "choice") {
    const select = el("select", { id, name: f.key, "aria-describedby": described },
      ...f.choices.map((c) => el("option", { value: c.join(","),
        textContent: c.length > 1 ? `${c[0]} leg first, then ${c[1]}` : `${c[0]} leg only` })));
    select.value = f.value.join(",");
    return select;
  }
  if (f.control === "time") {
    return el("input", { type: "time", id, name: f.key, value: f.value || "",
      "aria-describedby": described });
  }
  if (f.control === "slider") {
    const input = el("input", { type: "range", id, name: f.key, min: f.min, max: f.max,
      step: f.step, value: f.value, "aria-describedby": described });
    const out = el("output", { id: `o-${f.key}`, for: id, textContent: shown(f, f.value) });
    input.addEventListener("input", () => {
      out.textContent = shown(f, input.value);
      input.setAttribute("aria-valuetext", shown(f, input.value));
    });
    input.setAttribute("aria-valuetext", shown(f, f.value));
    return el("div", { class: "slider" }, input, out);
  }
  // stepper: a number box between - and +, the unit after it
  const input = el("input", { type: "number", id, name: f.key, min: f.min, max: f.max,
    step: f.step, value: f.value, inputMode: f.kind === "int" ? "numeric" : "decimal",
    "aria-describedby": described });
  const nudge = (sign) => {
    const value = Number(input.value || f.value) + sign * f.step;
    const clamped = Math.min(f.max, Math.max(f.min, value));
    input.value = clamped.toFixed(stepDecimals(f.step));
    input.dispatchEvent(new Event("input", { bubbles: true }));
  };
  const less = el("button", { type: "button", textContent: "−",
    "aria-label": `${f.label}: less` });
  const more = el("button", { type: "button", textContent: "+",
    "aria-label": `${f.label}: more` });
  less.addEventListener("click", () => nudge(-1));
  more.addEventListener("click", () => nudge(1));
  return el("div", { class: "stepper" }, less, input, more,
    el("span", { class: "unit", textContent: f.unit, "aria-hidden": "true" }));
}

function readField(f) {
  const input = $(`f-${f.key}`);
  if (f.control === "toggle") return input.checked;
  if (f.control === "choice") return input.value.split(",");
  if (f.control === "time") return input.value;
  const raw = input.value.trim();
  return raw !== "" && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
}

function renderSettings(list) {
  fields = list;
  const groups = [];
  list.forEach((f) => {
    let group = groups.find((g) => g.name === f.group);
    if (!group) { group = { name: f.group, fields: [] }; groups.push(group); }
    group.fields.push(f);
  });
  $("settings-fields").replaceChildren(...groups.map((g) => el("fieldset", { class: "group" },
    el("legend", { textContent: g.name }),
    ...g.fields.map((f) => {
      const label = el("label", { for: `f-${f.key}`,
        textContent: f.label });
      const doc = el("p", { class: "doc", id: `d-${f.key}`,
        textContent: f.min !== undefined && f.control === "stepper" ?
          `${f.help} From ${f.min} to ${f.max}${f.unit ? " " + f.unit : ""}.` : f.help });
      const msg = el("p", { class: "msg", id: `m-${f.key}` });
      const input = control(f);
      const box = el("div", { class: `field ${f.control === "toggle" ? "toggle" : "kind-" + f.control}` });
      if (f.control === "toggle") box.append(input, label, doc, msg);
      else box.append(label, input, doc, msg);
      return box;
    }))));
}

async function loadSettings() {
  const { status, data } = await api("/api/settings");
  if (status !== 200) return;
  renderSettings(data.fields);
  $("settings-msg").textContent = data.problem ? `The config file has a problem: ${data.problem}` : "";
}

function clearMessages() {
  document.querySelectorAll(".field .msg").forEach((m) => { m.textContent = ""; });
  document.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
}

$("settings-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const changes = {};
  fields.forEach((f) => {
    const value = readField(f);
    if (JSON.stringify(value) !== JSON.stringify(f.value)) changes[f.key] = value;
  });
  clearMessages();
  const msg = $("settings-msg");
  msg.className = "msg";
  if (Object.keys(changes).length === 0) { msg.textContent = "Nothing changed."; return; }
  const { status, data } = await api("/api/settings", { body: { changes } });
  if (status === 200) {
    renderSettings(data.fields);
    msg.textContent = `Saved. It applies ${data.applies}.`;
    msg.classList.add("good");
  } else if (status === 422) {
    const at = $(`m-${data.key}`);
    const input = $(`f-${data.key}`);
    if (at) at.textContent = data.message;
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
    msg.textContent = `Not saved. ${data.message}`;
    msg.classList.add("bad");
  } else {
    msg.textContent = (data && data.error) || `Not saved (${status}).`;
    msg.classList.add("bad");
  }
});

// ---- start ---------------------------------------------------------------------------

async function start() {
  let result;
  try {
    result = await api("/api/session");
  } catch (e) {
    setLink("box not reachable; retrying…", false);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(start, 1500);
    return;
  }
  if (result.status === 401) {
    showPairing("", result.data && result.data.code_command);
    return;
  }
  if (result.status !== 200) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(start, 1500);
    return;
  }
  const s = result.data;
  csrf = s.csrf;
  breath = { low: 0.04, high: 1, ...s.breath };
  longPressS = s.long_press_s;
  $("pairing").hidden = true;
  $("app").hidden = false;
  $("tabs").hidden = false;
  $("tab-history").hidden = !s.history;
  selectTab(location.hash.slice(1), false);
  render(s.view);  // at once; the live stream follows
  lendTime();
  connect();
  loadSettings();
  if (s.history) loadHistory();
}

// A box without a real-time clock and without a network may not know the date: it
// takes this phone's (it uses it only while its own clock is not synchronized).
async function lendTime() {
  let result;
  try { result = await api("/api/clock", { body: { now_ms: Date.now() } }); } catch (e) { return; }
  const used = result.status === 200 && result.data && result.data.used_phone;
  $("clock-note").hidden = !used;
  if (used) {
    $("clock-note").textContent = "The box's clock was not set: it took the date and time " +
      "from this phone (" + new Date().toLocaleString() + ").";
  }
}

$("tones").checked = localStorage.getItem("sc.tones") === "on";   // off unless chosen
$("keep-awake").checked = localStorage.getItem("sc.awake") !== "off";
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && (!source || source.readyState === EventSource.CLOSED)) start();
  syncWake();  // a lock is let go when the page hides; ask again when it shows
});
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js").catch(() => { /* the page works without */ });
}
setInterval(tickLeft, 250);
requestAnimationFrame(frame);
start();
