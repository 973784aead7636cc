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

// ---- pairing -------------------------------------------------------------------------

function showPairing(message) {
  if (source) { source.close(); source = null; }
  $("app").hidden = true;
  $("pairing").hidden = false;
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

// ---- live state ----------------------------------------------------------------------

function fmtS(s) {
  if (s === null || s === undefined) return "–";
  const t = Math.max(0, Math.ceil(s));
  return t >= 60 ? `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}` : `${t} s`;
}

function render(v) {
  const prev = view;
  view = v;
  viewAt = performance.now();
  const stateEl = $("state");
  if (!prev || prev.state !== v.state) {
    stateEl.textContent = v.state;
    stateEl.dataset.at = String(now());
  }
  $("leg").textContent = v.leg || "–";
  $("round").textContent = v.state === "idle" ? "–" : `${v.round} of ${v.rounds}`;
  $("planned").textContent = fmtS(v.hold_planned_s);
  $("next-hold").textContent = fmtS(v.next_hold_s);
  $("phase").textContent = { in: "breathe in", full: "hold full", out: "breathe out",
    empty: "hold empty" }[v.breath_phase] || "–";
  $("sensor").textContent = v.sensor_status || "–";
  $("voice").textContent = v.voice_off_reason ? `${v.voice_status} (${v.voice_off_reason})` :
    (v.voice_status || "–");
  const strap = v.sensor_status && v.sensor_status !== "absent";
  $("strap").hidden = !strap;
  if (strap) renderStrap(v);
  const list = $("spoken");
  const lines = (v.spoken || []).slice(-4);
  if (list.dataset.lines !== JSON.stringify(lines)) {
    list.dataset.lines = JSON.stringify(lines);
    list.replaceChildren(...lines.map((line) => {
      const li = document.createElement("li");
      li.textContent = line;
      return li;
    }));
  }
  $("button-label").textContent = v.state === "idle" || v.state === "done" ||
    v.state === "cancelled" ? "Start" : "Press";
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
  $("left").textContent = fmtS(left);
}

// The breathing shape: the box sends how far into the breath it is (breath_s) with each
// update; the page animates on its own from the pattern, no 50 Hz stream.
function syncBreath(v) {
  if (!breath || v.breath_s === null || v.breath_s === undefined) { cycleT0 = null; return; }
  cycleT0 = performance.now() - v.breath_s * 1000;
}

function breathLevel(t) {
  const b = breath;
  const period = b.inhale + b.hold_in + b.exhale + b.hold_out;
  t = ((t % period) + period) % period;
  const ramp = (x) => (1 - Math.cos(Math.PI * x)) / 2;
  if (t < b.inhale) return ramp(t / b.inhale);
  t -= b.inhale;
  if (t < b.hold_in) return 1;
  t -= b.hold_in;
  if (t < b.exhale) return 1 - ramp(t / b.exhale);
  return 0;
}

function frame() {
  const shape = $("breath-shape");
  let level = 0;
  if (cycleT0 !== null && breath) level = breathLevel((performance.now() - cycleT0) / 1000);
  else if (view) level = view.light || 0;
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
    render(data.view);
    const kind = data.event && data.event.kind;
    if (kind === "session" || kind === "history") loadHistory();
  };
  source.onerror = () => {
    setLink("reconnecting…", false);
    if (source.readyState === EventSource.CLOSED) {
      retryTimer = setTimeout(start, 1500);   // the box said no (or restarted): ask again
    }
  };
}

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
  const words = ["nothing", "started", "complete"];
  body.replaceChildren(...data.calendar.weeks.map((week) => {
    const tr = document.createElement("tr");
    const th = document.createElement("td");
    th.className = "week";
    th.textContent = week.week.slice(5);
    tr.append(th);
    week.days.forEach((mark) => {
      const td = document.createElement("td");
      td.className = mark < 0 ? "future" : `d${mark}`;
      if (mark >= 0) td.setAttribute("aria-label", words[mark]);
      td.textContent = mark === 2 ? "✓" : "";
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

// ---- settings ------------------------------------------------------------------------

let fields = [];

function fieldInput(f) {
  let input;
  if (f.kind === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(f.value);
  } else if (f.kind === "legs") {
    input = document.createElement("select");
    f.choices.forEach((choice) => {
      const opt = document.createElement("option");
      opt.value = choice.join(",");
      opt.textContent = choice.join(" then ");
      input.append(opt);
    });
    input.value = f.value.join(",");
  } else {
    input = document.createElement("input");
    if (f.kind === "text") {
      input.type = "text";
    } else {
      input.type = "text";
      input.inputMode = f.kind === "int" ? "numeric" : "decimal";
    }
    input.value = f.value === null ? "" : String(f.value);
  }
  input.id = `f-${f.key}`;
  input.name = f.key;
  input.setAttribute("aria-describedby", `m-${f.key} d-${f.key}`);
  return input;
}

function readField(f) {
  const input = $(`f-${f.key}`);
  if (f.kind === "bool") return input.checked;
  if (f.kind === "legs") return input.value.split(",");
  if (f.kind === "text") return input.value;
  const raw = input.value.trim();
  return raw !== "" && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
}

function renderSettings(list) {
  fields = list;
  const form = $("settings-form");
  form.replaceChildren(...list.map((f) => {
    const box = document.createElement("div");
    box.className = "field";
    const label = document.createElement("label");
    label.htmlFor = `f-${f.key}`;
    label.textContent = f.unit ? `${f.label} (${f.unit})` : f.label;
    const doc = document.createElement("span");
    doc.className = "doc";
    doc.id = `d-${f.key}`;
    doc.textContent = f.min !== undefined ? `${f.doc}; ${f.min} to ${f.max}` : f.doc;
    const msg = document.createElement("p");
    msg.className = "msg";
    msg.id = `m-${f.key}`;
    msg.setAttribute("role", "alert");
    box.append(label, fieldInput(f), doc, msg);
    return box;
  }));
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "primary";
  save.id = "save";
  save.textContent = "Save";
  form.append(save);
}

async function loadSettings() {
  const { status, data } = await api("/api/settings");
  if (status !== 200) return;
  renderSettings(data.fields);
  $("settings-msg").textContent = data.problem ? `The config file has a problem: ${data.problem}` : "";
}

$("settings-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const changes = {};
  fields.forEach((f) => {
    const value = readField(f);
    if (JSON.stringify(value) !== JSON.stringify(f.value)) changes[f.key] = value;
  });
  document.querySelectorAll(".field .msg").forEach((m) => { m.textContent = ""; });
  const msg = $("settings-msg");
  msg.className = "msg";
  if (Object.keys(changes).length === 0) { msg.textContent = "Nothing changed."; return; }
  const { status, data } = await api("/api/settings", { body: { changes } });
  if (status === 200) {
    renderSettings(data.fields);
    msg.textContent = `Saved. It applies ${data.applies}.`;
    msg.classList.add("good");
  } else if (status === 422) {
    const target = $(`m-${data.key}`) || msg;
    target.textContent = data.message;
    if (target !== msg) msg.textContent = "Not saved.";
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
  if (result.status === 401) { showPairing(""); return; }
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
  $("history").hidden = !s.history;
  render(s.view);  // at once; the live stream follows
  connect();
  loadSettings();
  if (s.history) loadHistory();
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && (!source || source.readyState === EventSource.CLOSED)) start();
});
setInterval(tickLeft, 250);
requestAnimationFrame(frame);
start();
