// The inspector's page: the registry, each machine's chart as nested boxes with its active
// states lit, the event log, and the send form. Live through server-sent events
// (/api/events); see docs/inspector.md. No library: the page is served from the binary.
"use strict";

const token = new URLSearchParams(location.search).get("token");
function api(path) {
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// ---- what the page knows ----
const machines = new Map(); // id -> {summary, report, chart, card, boxes, dirty, fetching}
let skippedStates = 0; // reports the server or the page did not draw
let skippedLog = 0;
const log = []; // newest last, at most LOG_KEEP
const LOG_KEEP = 2000;
const LOG_SHOWN = 500;

function glob(pattern, name) {
  if (!pattern) return true;
  const re = new RegExp("^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
  return re.test(name);
}

function time(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function showSkipped() {
  const parts = [];
  if (skippedStates) parts.push(`${skippedStates} intermediate state${skippedStates === 1 ? "" : "s"} skipped`);
  $("skipped").textContent = parts.join(", ");
  $("log-skipped").textContent = skippedLog ? `${skippedLog} events skipped (the page fell behind the bus)` : "";
}

// ---- the registry ----
function onMachines(msg) {
  $("bus").textContent = msg.bus;
  setConnected(msg.connected);
  const present = new Set(msg.machines.map((m) => m.machine));
  const shown = new Set([...present, ...msg.departed.map((m) => m.machine)]);
  for (const [id, m] of machines) {
    if (!shown.has(id)) {
      if (m.card) m.card.remove();
      machines.delete(id);
    }
  }
  for (const s of [...msg.machines, ...msg.departed]) {
    let m = machines.get(s.machine);
    if (!m || (m.summary && m.summary.since_ms !== s.since_ms && s.present)) {
      // New, or back on the bus (perhaps with another chart): start afresh.
      if (m && m.card) m.card.remove();
      m = { summary: s, report: null, chart: null, card: null, boxes: null, dirty: true };
      machines.set(s.machine, m);
    }
    m.summary = s;
    m.dirty = true;
    if (s.has_chart && !m.chart && !m.fetching && s.present) fetchChart(s.machine);
  }
  renderRegistry(msg.machines);
  scheduleDraw();
}

function renderRegistry(list) {
  const body = $("machines").tBodies[0];
  body.replaceChildren();
  for (const s of list) {
    const m = machines.get(s.machine);
    const r = m && m.report;
    const state = s.port ? "(port)" : r ? JSON.stringify(r.state) : "-";
    const row = el("tr", { "data-machine": s.machine },
      el("td", {}, s.machine), el("td", {}, String(s.pid)), el("td", {}, s.executable),
      el("td", {}, s.transport), el("td", { class: "status" }, (r && r.status) || "-"),
      el("td", { class: "state" }, state));
    row.addEventListener("click", () => select(s.machine));
    body.append(row);
  }
  $("no-machines").hidden = list.length > 0;
  const pick = $("send-machine");
  const was = pick.value;
  pick.replaceChildren(...list.map((s) => el("option", { value: s.machine, textContent: s.machine })));
  if (list.some((s) => s.machine === was)) pick.value = was;
}

function select(id) {
  for (const [mid, m] of machines) if (m.card) m.card.classList.toggle("selected", mid === id);
  const m = machines.get(id);
  if (m && m.card) m.card.scrollIntoView({ block: "nearest", behavior: "smooth" });
  $("send-machine").value = id;
}

async function fetchChart(id) {
  const m = machines.get(id);
  m.fetching = true;
  try {
    const res = await fetch(api("/api/machines/" + encodeURIComponent(id)));
    if (!res.ok) return;
    const detail = await res.json();
    const now = machines.get(id);
    if (now !== m) return;
    m.chart = detail.chart;
    if (!m.report && detail.report) m.report = detail.report;
    m.boxes = null;
    m.dirty = true;
    scheduleDraw();
  } finally {
    m.fetching = false;
  }
}

// ---- states ----
function onState(msg) {
  const m = machines.get(msg.machine);
  if (!m) return;
  skippedStates += msg.skipped;
  if (m.dirty && m.pendingReport) skippedStates += 1; // replaced before it was drawn
  m.report = msg.report;
  m.pendingReport = true;
  m.dirty = true;
  if (!m.chart && !m.fetching && m.summary.present) fetchChart(msg.machine);
  scheduleDraw();
}

let drawScheduled = false;
function scheduleDraw() {
  if (drawScheduled) return;
  drawScheduled = true;
  requestAnimationFrame(() => {
    drawScheduled = false;
    for (const [id, m] of machines) {
      if (m.dirty) {
        m.dirty = false;
        m.pendingReport = false;
        drawMachine(id, m);
      }
    }
    updateRegistryStates();
    showSkipped();
  });
}

function updateRegistryStates() {
  for (const row of $("machines").tBodies[0].rows) {
    const m = machines.get(row.dataset.machine);
    if (!m || !m.report || m.summary.port) continue;
    row.querySelector(".status").textContent = m.report.status || "-";
    row.querySelector(".state").textContent = JSON.stringify(m.report.state);
  }
}

// The states a state value names: the root, and along each key path of the value.
function activeStates(chart, value) {
  const active = new Set();
  if (!chart || !chart.states || value == null) return active;
  const children = (i) => chart.states.map((s, k) => [s, k]).filter(([s]) => s.parent === i);
  function walk(i, v) {
    active.add(i);
    if (v == null) return;
    if (typeof v === "string") {
      const c = children(i).find(([s]) => s.key === v);
      if (c) walk(c[1], null);
      return;
    }
    if (typeof v === "object") {
      for (const [k, sub] of Object.entries(v)) {
        const c = children(i).find(([s]) => s.key === k);
        if (c) walk(c[1], sub);
      }
    }
  }
  walk(0, value);
  return active;
}

function buildChart(chart) {
  const boxes = [];
  const byParent = new Map();
  chart.states.forEach((s, i) => {
    if (!byParent.has(s.parent)) byParent.set(s.parent, []);
    byParent.get(s.parent).push(i);
  });
  const outgoing = new Map();
  for (const t of chart.transitions) {
    if (!outgoing.has(t.from)) outgoing.set(t.from, []);
    outgoing.get(t.from).push(t);
  }
  for (const h of chart.history || []) outgoing.set(h.from, [{ from: h.from, to: h.to, label: "default" }]);
  const name = (i) => (chart.states[i] ? chart.states[i].key : "?");
  function box(i, isInitial) {
    const s = chart.states[i];
    const kind = s.kind;
    const title = s.parent == null ? s.id : kind === "history" ? "H" : kind === "deep-history" ? "H*" : s.key;
    const b = el("div", { class: `state kind-${kind}`, "data-key": s.key, "data-state-id": s.id, title: "#" + s.id },
      el("div", { class: "title" }, isInitial ? el("span", { class: "initial", title: "initial state" }, "▸ ") : null, title));
    const actions = [];
    if (s.entry) actions.push("entry / " + s.entry);
    if (s.exit) actions.push("exit / " + s.exit);
    if (actions.length) b.append(el("ul", { class: "actions" }, ...actions.map((a) => el("li", {}, a))));
    const ts = outgoing.get(i) || [];
    if (ts.length) {
      const ul = el("ul", { class: "transitions" });
      for (const t of ts) {
        const to = t.to.length ? t.to.map(name).join(", ") : "(stays)";
        const li = el("li", { "data-targets": t.to.join(",") }, el("span", { class: "label" }, t.label), " ", to);
        li.addEventListener("mouseenter", () => t.to.forEach((k) => boxes[k] && boxes[k].classList.add("target")));
        li.addEventListener("mouseleave", () => t.to.forEach((k) => boxes[k] && boxes[k].classList.remove("target")));
        ul.append(li);
      }
      b.append(ul);
    }
    const kids = byParent.get(i) || [];
    if (kids.length) b.append(el("div", { class: "children" }, ...kids.map((k) => box(k, s.initial === k))));
    boxes[i] = b;
    return b;
  }
  const root = box(0, false);
  return { root, boxes };
}

function drawMachine(id, m) {
  const s = m.summary;
  if (s.port) {
    if (m.card) m.card.remove();
    m.card = null;
    return;
  }
  if (!m.card) {
    m.card = el("article", { class: "card", "data-machine": id },
      el("h2", {}, id, el("span", { class: "meta" })),
      el("div", { class: "body" }));
    $("charts").append(m.card);
  }
  const card = m.card;
  card.classList.toggle("departed", !s.present);
  const status = m.report ? m.report.status : "no report yet";
  const left = s.present ? "" : `, left the bus at ${time(s.left_ms)}`;
  card.querySelector(".meta").textContent = `pid ${s.pid} · ${s.executable} · ${status}${left}`;
  const body = card.querySelector(".body");
  const chart = m.chart;
  if (chart && chart.omitted) {
    if (!m.boxes) {
      m.boxes = [];
      body.replaceChildren(
        el("p", { class: "note omitted" }, `The chart is too large to send in one frame (${chart.states} states, ` +
          `${chart.transitions} transitions, ${chart.bytes} bytes > ${chart.max_frame}): only its state is shown.`),
        el("p", { class: "value" }));
    }
  } else if (chart && chart.states) {
    if (!m.boxes) {
      const built = buildChart(chart);
      m.boxes = built.boxes;
      body.replaceChildren(built.root, el("p", { class: "value" }));
    }
  } else if (!m.boxes || m.boxes.length) {
    m.boxes = null;
    body.replaceChildren(el("p", { class: "note" }, s.present ? "Waiting for the chart… (a process that is not an interstate node never reports one)" : "No chart was received."),
      el("p", { class: "value" }));
  }
  const value = m.report ? m.report.state : null;
  const active = activeStates(chart, value);
  if (m.boxes) m.boxes.forEach((b, i) => b && b.classList.toggle("active", active.has(i)));
  const v = body.querySelector(".value");
  if (v) v.textContent = m.report ? "state " + JSON.stringify(value) + (m.report.truncated ? " (report too large, cut)" : "") : "";
}

// ---- the event log ----
function onLog(msg) {
  skippedLog += msg.skipped;
  for (const e of msg.entries) log.push(e);
  const fresh = msg.entries.filter(matches);
  if (log.length > LOG_KEEP) log.splice(0, log.length - LOG_KEEP);
  const list = $("log-list");
  for (const e of fresh) list.prepend(logRow(e));
  while (list.children.length > LOG_SHOWN) list.lastChild.remove();
  showSkipped();
}

function matches(e) {
  const fm = $("filter-machine").value.trim();
  const fe = $("filter-event").value.trim();
  if (fm && !glob(fm, e.from) && !glob(fm, e.to)) return false;
  if (fe && !glob(fe, e.event) && !(e.failed_event && glob(fe, e.failed_event))) return false;
  if ($("filter-failed").checked && !e.failed) return false;
  return true;
}

function logRow(e) {
  const li = el("li", { class: e.failed ? "failed" : "", "data-event": e.event, "data-seq": String(e.seq) },
    el("span", { class: "at" }, time(e.at_ms)), ` ${e.from} → ${e.to} `, el("b", {}, e.event));
  li.addEventListener("click", () => {
    for (const x of $("log-list").querySelectorAll(".selected")) x.classList.remove("selected");
    li.classList.add("selected");
    const what = { seq: e.seq, from: e.from, to: e.to, event: e.event, data: e.data };
    if (e.failed) what.failed_event = e.failed_event;
    if (e.data_cut) what.note = "payload cut to its first 2048 bytes";
    $("payload").textContent = JSON.stringify(what, null, 2);
  });
  return li;
}

function refilter() {
  const list = $("log-list");
  list.replaceChildren(...log.filter(matches).slice(-LOG_SHOWN).reverse().map(logRow));
}
for (const id of ["filter-machine", "filter-event", "filter-failed"]) $(id).addEventListener("input", refilter);

// ---- sending ----
$("send-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("send-result");
  out.className = "";
  out.textContent = "sending…";
  const text = $("send-data").value.trim();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      out.className = "error";
      out.textContent = "The data is not JSON: " + e.message;
      return;
    }
  }
  const body = { machine: $("send-machine").value, event: $("send-event").value.trim(), data };
  try {
    const res = await fetch(api("/api/send"), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await res.json();
    if (res.ok) {
      out.className = "ok";
      out.textContent = `Sent ${answer.event} to ${answer.machine}.`;
    } else {
      out.className = "error";
      out.textContent = answer.error || `HTTP ${res.status}`;
    }
  } catch (e) {
    out.className = "error";
    out.textContent = "The inspector did not answer: " + e.message;
  }
});

// ---- the stream ----
function setConnected(up) {
  const c = $("conn");
  c.textContent = up ? "connected" : "not connected to the bus";
  c.className = "conn " + (up ? "up" : "down");
}

function connect() {
  const since = log.length ? log[log.length - 1].seq : null;
  const source = new EventSource(api("/api/events" + (since != null ? "?since=" + since : "")));
  source.addEventListener("machines", (e) => onMachines(JSON.parse(e.data)));
  source.addEventListener("state", (e) => onState(JSON.parse(e.data)));
  source.addEventListener("log", (e) => onLog(JSON.parse(e.data)));
  source.addEventListener("error", () => {
    const c = $("conn");
    c.textContent = "inspector unreachable, retrying…";
    c.className = "conn down";
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
  });
}
connect();
