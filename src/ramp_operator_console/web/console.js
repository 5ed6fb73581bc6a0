// RAMP operator console: plain JS, no build step, nothing fetched from elsewhere.
// One WebSocket: JSON state (type "state") and binary camera frames
// (u8 camera index, f64 capture stamp s, u32 seq, little endian; then JPEG).
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token") || "";
const headers = { "Content-Type": "application/json" };
if (token) headers["X-Ramp-Token"] = token;

const $ = (id) => document.getElementById(id);
const COLORS = { AUTONOMOUS: "#2ea043", CORRECTING: "#f0883e", PAUSED: "#6e7681", ESTOP: "#f85149" };
const CHART_WINDOW_S = 10;

let config = null;
let last = null;           // last state message
let clockOffset = 0;       // robot time - browser time, s
let confirmTimer = null;
const cams = [];           // per camera: {img, url, frames, times, stamp, seq}
const chart = { measured: [], command: [], canvases: [] };

function robotNow() { return Date.now() / 1000 + clockOffset; }

async function init() {
  const res = await fetch("/api/config", { headers });
  config = await res.json();
  buildCameras();
  buildCharts();
  buildHelp();
  for (const btn of document.querySelectorAll("button[data-command]")) {
    const name = btn.dataset.command;
    btn.addEventListener("click", () => (name === "estop_release" ? askRelease() : send(name)));
  }
  $("btn-pause").addEventListener("click", togglePause);
  $("confirm-yes").addEventListener("click", () => { hideConfirm(); send("estop_release"); });
  $("confirm-no").addEventListener("click", hideConfirm);
  $("task-form").addEventListener("submit", (e) => { e.preventDefault(); setTask(); });
  $("help-btn").addEventListener("click", () => $("help").classList.toggle("hidden"));
  $("help-close").addEventListener("click", () => $("help").classList.add("hidden"));
  document.addEventListener("keydown", onKey);
  connect();
}

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  if (params.get("fps")) url.searchParams.set("fps", params.get("fps"));
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => setConn(true);
  ws.onclose = () => { setConn(false); setTimeout(connect, 1000); };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") onJson(JSON.parse(ev.data));
    else onFrame(ev.data);
  };
}

function setConn(ok) {
  const el = $("conn");
  el.textContent = ok ? "connected" : "disconnected";
  el.className = "badge " + (ok ? "good" : "bad");
}

// ------------------------------------------------------------------ cameras

function buildCameras() {
  const grid = $("camera-grid");
  config.cameras.forEach((name) => {
    const box = document.createElement("div");
    box.className = "camera";
    box.id = "cam-" + name;
    box.innerHTML = `<img alt="${name}"><div class="caption"><span>${name}</span>` +
      `<span class="fps">no frame yet</span></div>`;
    grid.appendChild(box);
    cams.push({ name, img: box.querySelector("img"), fpsEl: box.querySelector(".fps"),
      box, url: null, frames: 0, times: [], stamp: 0, seq: 0 });
  });
}

function onFrame(buf) {
  const view = new DataView(buf);
  const cam = cams[view.getUint8(0)];
  if (!cam) return;
  cam.stamp = view.getFloat64(1, true);
  cam.seq = view.getUint32(9, true);
  const url = URL.createObjectURL(new Blob([buf.slice(13)], { type: "image/jpeg" }));
  const old = cam.url;
  cam.url = url;
  cam.img.onload = () => { if (old) URL.revokeObjectURL(old); };
  cam.img.src = url;
  cam.frames += 1;
  cam.box.dataset.frames = String(cam.frames);
  const now = performance.now();
  cam.times.push(now);
  while (cam.times.length && now - cam.times[0] > 2000) cam.times.shift();
}

function updateCameraCaptions() {
  const now = performance.now();
  for (const cam of cams) {
    while (cam.times.length && now - cam.times[0] > 2000) cam.times.shift();
    if (!cam.frames) continue;
    const age = Math.max(0, robotNow() - cam.stamp);
    cam.fpsEl.textContent = `${(cam.times.length / 2).toFixed(1)} fps, age ${(age * 1000).toFixed(0)} ms`;
  }
}

// ------------------------------------------------------------------ state

function onJson(msg) {
  if (msg.type === "hello") {
    if (msg.joint_names.join() !== config.joint_names.join()) {
      config.joint_names = msg.joint_names;
      buildCharts();
    }
    return;
  }
  if (msg.type !== "state") return;
  clockOffset = msg.now - Date.now() / 1000;
  last = msg;
  const arb = msg.arbiter;
  const st = arb ? arb.state : "?";
  const el = $("arbiter-state");
  el.textContent = st;
  el.className = "badge state " + st;
  $("arbiter-reason").textContent = arb ? arb.reason : "no arbiter seen";
  const who = { AUTONOMOUS: "policy", CORRECTING: "operator", PAUSED: "nobody (paused)", ESTOP: "nobody (e-stop)" }[st] || "?";
  $("in-control").textContent = who;
  $("estop-banner").classList.toggle("hidden", msg.estop_active !== true);
  document.body.dataset.estop = String(msg.estop_active === true);
  $("btn-pause").innerHTML = st === "PAUSED" ? "Resume <kbd>p</kbd>" : "Pause <kbd>p</kbd>";
  $("task-current").textContent = msg.task || "-";
  const ep = msg.episode;
  const es = $("episode-status");
  if (!ep) { es.textContent = "none"; es.className = "badge"; }
  else if (ep.recording) { es.textContent = "recording " + (ep.name || ""); es.className = "badge recording"; }
  else { es.textContent = `${ep.name}: ${ep.label}`; es.className = "badge"; }
  for (const ev of msg.events) addResult(ev);
  for (const key of ["measured", "command"]) {
    chart[key].push(...msg.chart[key]);
    const cut = msg.now - CHART_WINDOW_S;
    while (chart[key].length && chart[key][0][0] < cut) chart[key].shift();
  }
  renderRecorder(msg.recorder);
  if (msg.nodes) renderHealth(msg.nodes);
  requestAnimationFrame(draw);
}

function addResult(ev) {
  const li = document.createElement("li");
  li.className = ev.success ? "ok" : "fail";
  const t = new Date(ev.at_s * 1000).toLocaleTimeString();
  li.textContent = `${t} ${ev.command}: ${ev.success ? "ok" : "FAILED"} - ${ev.message} (${ev.duration_ms.toFixed(0)} ms)`;
  li.dataset.command = ev.command;
  li.dataset.success = String(ev.success);
  const list = $("results");
  list.insertBefore(li, list.firstChild);
  while (list.children.length > 30) list.removeChild(list.lastChild);
}

function renderRecorder(rec) {
  const body = $("recorder").querySelector("tbody");
  if (!rec) { body.innerHTML = "<tr><td>no episode_recorder diagnostics seen</td></tr>"; return; }
  const rows = [
    ["state", rec.recording === "True" ? "recording" : "idle"],
    ["episode", rec.episode || "-"],
    ["free disk", rec.free_disk_mb ? `${Number(rec.free_disk_mb).toFixed(0)} MB` : "?"],
    ["written", rec.written_mb ? `${Number(rec.written_mb).toFixed(1)} MB` : "-"],
    ["queued", rec.queued_mb ? `${Number(rec.queued_mb).toFixed(1)} MB` : "-"],
    ["dropped", rec.dropped || "0"],
    ["episodes", rec.episodes_recorded || "0"],
    ["status", `${rec.level}: ${rec.message}`],
  ];
  if (rec.last_error) rows.push(["last error", rec.last_error]);
  body.innerHTML = "";
  for (const [k, v] of rows) {
    const tr = body.insertRow();
    tr.insertCell().textContent = k;
    const td = tr.insertCell();
    td.textContent = v;
    td.id = "rec-" + k.replace(/ /g, "-");
  }
}

function renderHealth(nodes) {
  const body = $("health").querySelector("tbody");
  body.innerHTML = "";
  for (const n of nodes) {
    const tr = body.insertRow();
    tr.insertCell().textContent = n.name;
    const lv = tr.insertCell();
    lv.textContent = n.level;
    lv.className = "lv-" + n.level;
    tr.insertCell().textContent = n.message;
    const hl = tr.insertCell();
    hl.textContent = Object.entries(n.highlights).map(([k, v]) => `${k}=${v}`).join("  ");
    tr.title = Object.entries(n.values).map(([k, v]) => `${k}: ${v}`).join("\n");
  }
}

// ------------------------------------------------------------------ controls

async function send(name) {
  try {
    const res = await fetch("/api/command/" + name, { method: "POST", headers, body: "{}" });
    const out = await res.json();
    if (!res.ok) addResult({ command: name, success: false, message: out.message, duration_ms: 0, at_s: Date.now() / 1000 });
  } catch (err) {
    addResult({ command: name, success: false, message: String(err), duration_ms: 0, at_s: Date.now() / 1000 });
  }
}

function togglePause() { send(last && last.arbiter && last.arbiter.state === "PAUSED" ? "resume" : "pause"); }

function askRelease() {
  $("confirm-release").classList.remove("hidden");
  clearTimeout(confirmTimer);
  confirmTimer = setTimeout(hideConfirm, 8000);
}
function hideConfirm() { $("confirm-release").classList.add("hidden"); clearTimeout(confirmTimer); }
function confirming() { return !$("confirm-release").classList.contains("hidden"); }

async function setTask() {
  const text = $("task-input").value.trim();
  if (!text) return;
  const res = await fetch("/api/task", { method: "POST", headers, body: JSON.stringify({ task: text }) });
  const out = await res.json();
  if (!res.ok) addResult({ command: "task", success: false, message: out.message, duration_ms: 0, at_s: Date.now() / 1000 });
  $("task-input").blur();
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const typing = e.target && (e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA");
  if (typing) { if (e.key === "Escape") e.target.blur(); return; }
  if (confirming()) {
    if (e.key === "Enter") { e.preventDefault(); hideConfirm(); send("estop_release"); return; }
    if (e.key === "Escape") { hideConfirm(); return; }
  }
  if (e.key === "Escape") { $("help").classList.add("hidden"); return; }
  if (e.key === "?") { $("help").classList.toggle("hidden"); return; }
  if (e.key === config.task_key) { e.preventDefault(); $("task-input").focus(); return; }
  if (e.key === "p") { togglePause(); return; }
  if (e.key === "r") { askRelease(); return; }
  const cmd = config.commands.find((c) => c.key === e.key);
  if (!cmd) return;
  e.preventDefault();
  send(cmd.name);
}

function buildHelp() {
  const body = $("help-keys").querySelector("tbody");
  const rows = config.commands.filter((c) => c.name !== "resume").map((c) => [
    c.key === " " ? "space" : c.key, c.name === "pause" ? "Pause / resume" : c.label + (c.confirm ? " (then Enter)" : "")]);
  rows.push([config.task_key, "Edit the task (Enter sets it)"], ["?", "This help"]);
  for (const [k, label] of rows) {
    const tr = body.insertRow();
    tr.insertCell().innerHTML = `<kbd>${k}</kbd>`;
    tr.insertCell().textContent = label;
  }
}

// ------------------------------------------------------------------ drawing

function buildCharts() {
  const box = $("charts");
  box.innerHTML = "";
  chart.canvases = config.joint_names.map((name) => {
    const div = document.createElement("div");
    div.className = "chart";
    div.innerHTML = `<div class="name">${name}</div><canvas width="300" height="90"></canvas>`;
    box.appendChild(div);
    return div.querySelector("canvas");
  });
}

// Drawn once per state message (state_rate_hz), not per animation frame: a page left open
// on the robot computer should cost it little.
function draw() {
  updateCameraCaptions();
  if (last) {
    drawCharts();
    drawTimeline();
  }
}

function drawCharts() {
  const now = robotNow();
  chart.canvases.forEach((cv, j) => {
    const ctx = cv.getContext("2d");
    const w = cv.width, h = cv.height;
    ctx.clearRect(0, 0, w, h);
    let lo = Infinity, hi = -Infinity;
    for (const key of ["measured", "command"]) {
      for (const s of chart[key]) { const v = s[j + 1]; if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
    }
    if (!Number.isFinite(lo)) return;
    const pad = Math.max(0.02, (hi - lo) * 0.1);
    lo -= pad; hi += pad;
    const x = (t) => w - ((now - t) / CHART_WINDOW_S) * w;
    const y = (v) => h - ((v - lo) / (hi - lo)) * h;
    ctx.fillStyle = "#8b949e";
    ctx.font = "10px sans-serif";
    ctx.fillText(hi.toFixed(2), 2, 10);
    ctx.fillText(lo.toFixed(2), 2, h - 2);
    for (const [key, color, dash] of [["measured", "#58a6ff", []], ["command", "#f0883e", [5, 3]]]) {
      ctx.strokeStyle = color;
      ctx.setLineDash(dash);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let first = true;
      for (const s of chart[key]) {
        const v = s[j + 1];
        if (!Number.isFinite(v)) { first = true; continue; }
        if (first) ctx.moveTo(x(s[0]), y(v)); else ctx.lineTo(x(s[0]), y(v));
        first = false;
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
  });
}

function drawTimeline() {
  const cv = $("timeline");
  const ctx = cv.getContext("2d");
  const w = cv.width, h = cv.height;
  ctx.clearRect(0, 0, w, h);
  const segs = last.timeline;
  const ep = last.episode;
  const start = ep ? ep.start_s : (segs.length ? segs[0].start_s : last.now);
  const end = ep && ep.end_s ? ep.end_s : robotNow();
  const span = Math.max(1, end - start);
  $("timeline-title").textContent = ep
    ? `${ep.name || "episode"}: ${span.toFixed(1)} s${ep.recording ? " (recording)" : ", " + ep.label}`
    : "(no episode yet: all state changes seen)";
  for (const s of segs) {
    const x0 = ((s.start_s - start) / span) * w;
    const x1 = (((s.end_s >= last.now - 0.001 && !(ep && ep.end_s) ? end : s.end_s) - start) / span) * w;
    ctx.fillStyle = COLORS[s.state] || "#30363d";
    ctx.fillRect(x0, 8, Math.max(1, x1 - x0), h - 24);
  }
  ctx.fillStyle = "#8b949e";
  ctx.font = "11px sans-serif";
  ctx.fillText("0 s", 2, h - 3);
  ctx.fillText(`${span.toFixed(1)} s`, w - 40, h - 3);
  cv.dataset.segments = JSON.stringify(segs.map((s) => s.state));
}

init();
