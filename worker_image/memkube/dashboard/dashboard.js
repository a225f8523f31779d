// memkube dashboard: polls /dashboard/api/pool every second and draws the view it returns.
// All decisions (state colours, rates, "why" sentences) are made server-side in view.py;
// this file only draws. Untrusted text (worker names, messages) goes in via textContent.
"use strict";

const FEED = "/dashboard/api/pool";
const PERIOD_MS = 1000;
const CHART_SECONDS = 600;
const SVG_NS = "http://www.w3.org/2000/svg";
// Event kind -> badge style; kinds not listed get a neutral badge.
const KIND_STYLE = { pause: "pause", resume: "resume", "memory-restart": "memory-restart",
  "oom-kill": "oom-kill", retire: "retire", retiring: "retire", "worker-retired": "retire",
  "worker-lost": "worker-lost", "key-lost": "worker-lost", "worker-added": "worker-added" };
const STATE_COLOURS = { normal: "#2563eb", spilling: "#d97706", paused: "#dc2626", retiring: "#64748b" };
const KIND_COLOURS = { pause: "#dc2626", resume: "#16a34a", "memory-restart": "#9333ea",
  "oom-kill": "#7f1d1d", retire: "#64748b", "worker-lost": "#0f172a", "worker-added": "#0891b2",
  other: "#64748b" };

let selected = null;   // the worker whose detail row is open
let lastView = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = n, i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) { value /= 1024; i++; }
  if (i === 0) return `${Math.round(value)} B`;
  return `${value < 100 ? value.toFixed(1) : value.toFixed(0)} ${units[i]}`;
}

function rate(n) { return n > 0 ? `${bytes(n)}/s` : "–"; }
function pct(part, whole) { return whole > 0 ? Math.max(0, Math.min(100, (100 * part) / whole)) : 0; }
function clock(t) { return new Date(t * 1000).toLocaleTimeString([], { hour12: false }); }
function text(id, value) { document.getElementById(id).textContent = value; }

function drawCards(view) {
  const t = view.totals;
  text("pool-address", view.scheduler.address || "");
  text("total-workers", t.workers);
  const chips = document.getElementById("worker-states");
  chips.replaceChildren(...Object.entries(t.by_state).filter(([, n]) => n > 0)
    .map(([state, n]) => el("span", { class: `chip ${state}` }, `${n} ${state}`)));
  const used = t.managed + t.unmanaged;
  text("total-memory", bytes(used));
  text("total-memory-sub", t.limit
    ? `of ${bytes(t.limit)} (${pct(used, t.limit).toFixed(0)}%) · managed ${bytes(t.managed)}`
    : `managed ${bytes(t.managed)} · no limit`);
  document.getElementById("total-memory-bar").replaceChildren(
    el("div", { class: "seg", style: { width: `${pct(t.managed, t.limit || used)}%`, background: "var(--normal)" } }),
    el("div", { class: "seg", style: { width: `${pct(t.unmanaged, t.limit || used)}%`, background: "var(--normal-2)" } }));
  text("total-spilled", bytes(t.spilled));
  text("total-rates", `spill ${rate(t.spill_rate)} · unspill ${rate(t.unspill_rate)}`);
  text("total-restarts", t.memory_restarts);
  const ooms = view.events.filter((e) => e.kind === "oom-kill").length;
  text("total-oom", ooms ? `${ooms} OOM kill${ooms > 1 ? "s" : ""} seen by the operator` : "no OOM kills seen");
  text("replication", `×${view.replication.factor}`);
  const short = view.replication.shortfall;
  const sub = document.getElementById("replication-sub");
  sub.textContent = short ? `${short} key${short > 1 ? "s" : ""} short of copies` : "every held key fully replicated";
  sub.className = short ? "sub warn" : "sub";
}

function drawTasks(view) {
  const total = view.tasks.reduce((sum, t) => sum + t.count, 0);
  text("tasks-total", total ? `${total} known` : "none yet");
  const known = new Set(["memory", "processing", "queued", "waiting", "erred", "released"]);
  const cls = (state) => (known.has(state) ? `t-${state}` : "t-other");
  document.getElementById("taskbar").replaceChildren(...view.tasks.filter((t) => t.count > 0).map((t) =>
    el("div", { class: `seg ${cls(t.state)}`, "data-state": t.state, title: `${t.state}: ${t.count}`,
      style: { width: `${pct(t.count, total)}%` } })));
  document.getElementById("task-legend").replaceChildren(...view.tasks.map((t) =>
    el("span", { "data-task-state": t.state, "data-count": t.count },
      el("i", { class: `sw ${cls(t.state)}` }), `${t.state} ${t.count}`)));
}

function memoryBar(w) {
  // 100% of the bar is the limit; without a limit, the largest of process and managed+unmanaged.
  const scale = w.limit || Math.max(w.process, w.managed + w.unmanaged, 1);
  const fill = el("div", { class: "fill" },
    el("div", { class: "seg managed", "data-part": "managed", "data-bytes": w.managed,
      style: { width: `${pct(w.managed, scale)}%` } }),
    el("div", { class: "seg unmanaged", "data-part": "unmanaged", "data-bytes": w.unmanaged,
      style: { width: `${pct(w.unmanaged, scale)}%` } }));
  const bar = el("div", { class: `membar ${w.state}`, title: `process ${bytes(w.process)} of ${bytes(w.limit)}` }, fill);
  for (const [name, at] of Object.entries(w.thresholds)) {
    bar.append(el("div", { class: `thr ${name}`, "data-threshold": name, title: `${name}: ${bytes(at)}`,
      style: { left: `calc(${pct(at, scale)}% - 1px)` } }));
  }
  const disk = el("div", { class: "diskbar" }, el("div", { class: "seg spilled", "data-part": "spilled",
    "data-bytes": w.spilled, style: { width: `${pct(w.spilled, scale)}%` } }));
  const label = el("div", { class: "barlabel" },
    `${bytes(w.managed + w.unmanaged)} / ${w.limit ? bytes(w.limit) : "no limit"}`,
    w.spilled ? ` · ${bytes(w.spilled)} on disk` : "",
    w.spill_full ? el("span", { class: "warn" }, " · spill disk full") : "");
  return el("td", {}, bar, disk, label);
}

function toggle(name, byKeyboard) {
  selected = selected === name ? null : name;
  draw(lastView);
  // The rows were redrawn: give the keyboard focus back to this worker's row.
  if (byKeyboard) document.querySelector(`tr.worker[data-worker="${CSS.escape(name)}"]`)?.focus();
}

function workerRow(w) {
  const row = el("tr", {
    class: `worker${selected === w.name ? " selected" : ""}`, "data-worker": w.name, "data-state": w.state,
    tabindex: 0, "aria-expanded": String(selected === w.name),
    onclick: () => toggle(w.name, false),
    onkeydown: (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); toggle(w.name, true); } },
  },
  el("td", { class: "name", title: `${w.address}${w.node ? " on " + w.node : ""}` }, w.name),
  el("td", {}, el("span", { class: `badge ${w.state}` }, w.state)),
  memoryBar(w),
  el("td", { class: "num", "data-field": "managed" }, bytes(w.managed)),
  el("td", { class: "num", "data-field": "unmanaged" }, bytes(w.unmanaged)),
  el("td", { class: "num", "data-field": "spilled" }, bytes(w.spilled)),
  el("td", { class: "num", "data-field": "spill_rate" }, rate(w.spill_rate)),
  el("td", { class: "num", "data-field": "unspill_rate" }, rate(w.unspill_rate)),
  el("td", { class: "num", title: "executing / ready" }, `${w.executing} / ${w.ready}`),
  el("td", { class: w.memory_restarts ? "num warn" : "num", "data-field": "memory_restarts" }, w.memory_restarts));
  return row;
}

function detailRow(w, hints) {
  const thresholds = el("dl", { class: "kv" },
    el("dt", {}, "limit"), el("dd", {}, w.limit ? bytes(w.limit) : "none"),
    el("dt", {}, "process"), el("dd", {}, bytes(w.process)));
  for (const name of ["target", "spill", "pause", "terminate"]) {
    const at = w.thresholds[name];
    thresholds.append(el("dt", {}, name), el("dd", {}, at === undefined ? "off" :
      `${bytes(at)} (${((100 * at) / w.limit).toFixed(0)}%)`));
  }
  thresholds.append(el("dt", {}, "keys"), el("dd", {}, w.keys),
    el("dt", {}, "threads"), el("dd", {}, w.nthreads),
    el("dt", {}, "address"), el("dd", {}, w.address + (w.node ? ` (node ${w.node})` : "")));
  const events = w.events.length
    ? el("ol", { class: "events compact" }, ...w.events.map((e) => eventItem(e, hints, false)))
    : el("p", { class: "empty" }, "No memory events for this worker.");
  return el("tr", { class: "detail", "data-detail": w.name }, el("td", { colspan: 10 },
    el("div", { class: "detail-grid" },
      el("div", {}, el("h4", {}, "Why"), el("ul", { class: "why" }, ...w.why.map((line) => el("li", {}, line)))),
      el("div", {}, el("h4", {}, "Thresholds"), thresholds),
      el("div", {}, el("h4", {}, "Recent events"), events))));
}

function drawWorkers(view) {
  const rows = [];
  for (const w of view.workers) {
    rows.push(workerRow(w));
    if (selected === w.name) rows.push(detailRow(w, view.event_hints));
  }
  document.getElementById("workers").replaceChildren(...rows);
  document.getElementById("no-workers").hidden = view.workers.length > 0;
}

function eventItem(e, hints, withWorker) {
  const kind = KIND_STYLE[e.kind] || "other";
  const who = withWorker
    ? el("span", { class: "who", onclick: () => { selected = e.worker; draw(lastView); } }, e.worker)
    : null;
  return el("li", { "data-kind": e.kind },
    el("time", {}, clock(e.time)), who,
    el("span", {}, el("span", { class: `kind ${kind}`, title: hints[e.kind] || "" }, e.kind), e.message || ""));
}

// The time span the chart and the event strip share: the last 10 minutes, or since the
// oldest sample or recent event when that is younger (at least a minute), so a new
// dashboard does not squeeze everything into the right edge.
function timeWindow(view) {
  const end = view.time;
  const recent = view.events.map((e) => e.time).filter((t) => t >= end - CHART_SECONDS);
  const first = Math.min(end, ...view.history.map((p) => p[0]), ...recent);
  const span = Math.max(60, Math.min(CHART_SECONDS, end - first));
  return { start: end - span, end, span };
}

function drawEvents(view) {
  document.getElementById("events").replaceChildren(...view.events.map((e) => eventItem(e, view.event_hints, true)));
  document.getElementById("no-events").hidden = view.events.length > 0;
  const width = 600, height = 34, { start, span } = timeWindow(view);
  const strip = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", height });
  strip.append(svg("line", { x1: 0, x2: width, y1: height / 2, y2: height / 2, stroke: "#cbd5e1" }));
  for (const e of view.events) {
    if (e.time < start) continue;
    const dot = svg("circle", { cx: Math.max(6, Math.min(width - 6, ((e.time - start) / span) * width)), cy: height / 2, r: 5,
      fill: KIND_COLOURS[KIND_STYLE[e.kind] || "other"] });
    const title = svg("title", {});
    title.textContent = `${clock(e.time)} ${e.kind} ${e.worker}: ${e.message || ""}`;
    dot.append(title);
    strip.append(dot);
  }
  document.getElementById("timeline").replaceChildren(strip);
}

function drawChart(view) {
  const width = 600, height = 170, pad = 4, { start, end, span } = timeWindow(view);
  const points = view.history.filter((p) => p[0] >= start);
  const top = Math.max(view.totals.limit, ...points.map((p) => p[1] + p[2] + p[3]), 1) * 1.05;
  const x = (t) => ((t - start) / span) * width;
  const y = (v) => height - pad - (v / top) * (height - 2 * pad);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", height });
  // Stacked areas: managed at the bottom, then unmanaged, then spilled.
  const layers = [[1, "#2563eb"], [2, "#93c5fd"], [3, "#8b5cf6"]];
  let below = points.map(() => 0);
  for (const [index, colour] of layers) {
    const above = points.map((p, i) => below[i] + p[index]);
    if (points.length > 1) {
      const upper = points.map((p, i) => `${x(p[0])},${y(above[i])}`);
      const lower = points.map((p, i) => `${x(p[0])},${y(below[i])}`).reverse();
      chart.append(svg("polygon", { points: [...upper, ...lower].join(" "), fill: colour, opacity: 0.85 }));
    }
    below = above;
  }
  if (view.totals.limit) {
    chart.append(svg("line", { x1: 0, x2: width, y1: y(view.totals.limit), y2: y(view.totals.limit),
      stroke: "#dc2626", "stroke-dasharray": "4 3" }));
    const label = svg("text", { x: 4, y: y(view.totals.limit) + 12, class: "axis" });
    label.textContent = `limit ${bytes(view.totals.limit)}`;
    chart.append(label);
  }
  const holder = document.getElementById("chart");
  const axis = el("div", { class: "axis-row" }, el("span", {}, clock(start)),
    el("span", { class: "legend" },
      el("span", {}, el("i", { class: "sw managed" }), "managed"),
      el("span", {}, el("i", { class: "sw unmanaged" }), "unmanaged"),
      el("span", {}, el("i", { class: "sw spilled" }), "spilled")),
    el("span", {}, clock(end)));
  holder.replaceChildren(chart, axis);
  if (points.length < 2) holder.append(el("p", { class: "empty" }, "Collecting samples…"));
}

function draw(view) {
  if (!view) return;
  lastView = view;
  drawCards(view);
  drawTasks(view);
  drawWorkers(view);
  drawEvents(view);
  drawChart(view);
}

function setLive(state, label) {
  const live = document.getElementById("live");
  live.dataset.live = state;
  text("live-text", label);
}

async function poll() {
  try {
    const response = await fetch(FEED, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) { window.location.assign("/dashboard/login"); return; }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const view = await response.json();
    draw(view);
    setLive("live", `live · ${clock(view.time)}`);
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (err) {
    setLive("stale", `disconnected (${err.message}) · retrying`);
  }
  setTimeout(poll, PERIOD_MS);
}

document.addEventListener("DOMContentLoaded", poll);
