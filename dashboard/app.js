/* The vmferry dashboard (SPEC §13): rules and their jobs from /api/v1,
 * kept live by the event stream /api/v1/events (no polling), the job's
 * traffic graph, restore points and log, statistics as charts, and the
 * commands as buttons, enabled by the actions each job's state machine
 * takes now.  Every name a platform or a rule file sent is shown as text
 * (textContent), never as markup. */
"use strict";

const API = "/api/v1/";
const KINDS = { migration: "迁移 migration", replication: "复制 replication", backup: "备份 backup" };
/* The buttons: [op, label]; shown for the kinds that have the command. */
const BUTTONS = [
  ["start", "启动 start"], ["stop", "停止 stop"], ["delete", "删除 delete"],
  ["migrate", "开始迁移 migrate"], ["run", "立即执行 run"], ["failover", "临时切换 failover"],
  ["failback", "回切 failback"], ["revert", "恢复快照 revert"], ["restore", "恢复 restore"],
];
const KIND_OPS = {
  migration: ["start", "stop", "delete", "migrate"],
  replication: ["start", "stop", "delete", "run", "failover", "failback", "revert"],
  backup: ["start", "stop", "delete", "run", "restore"],
};

const state = {
  token: sessionStorage.getItem("vmferry-token") || "",
  jobs: new Map(),      /* key kind/rule/vm -> job object */
  rows: new Map(),      /* key -> <tr> */
  selected: null,       /* key of the job shown in detail */
  traffic: null,        /* {step_s, end, bytes[]} of the selected job */
  lastDone: new Map(),  /* key -> bytes_done seen last (traffic while shown) */
  charts: {},
  events: null,
  stats: null,
};
window.vmferry = state; /* for the browser tests */

const $ = (id) => document.getElementById(id);
const keyOf = (j) => `${j.kind}/${j.rule}/${j.vm}`;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  return h;
}

/* GET a read-only op with its fields as query parameters. */
async function get(op, fields) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(fields || {})) if (v !== undefined && v !== null) q.set(k, v);
  const r = await fetch(API + op + (q.toString() ? `?${q}` : ""), { headers: headers(false) });
  return answer(r, op);
}

/* POST an op that changes something, with the token. */
async function post(op, fields) {
  const r = await fetch(API + op, { method: "POST", headers: headers(true), body: JSON.stringify(fields) });
  return answer(r, op);
}

async function answer(r, op) {
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401 || r.status === 403) {
    throw new Error(`${op}: ${r.status === 401 ? "需要令牌 a token is needed" : "令牌错误 the token was refused"} (HTTP ${r.status})`);
  }
  if (!body) throw new Error(`${op}: HTTP ${r.status}`);
  if (!body.ok) throw new Error(`${op}: ${body.error}`);
  return body;
}

/* ---- jobs ---- */

function ruleCard(job) {
  const id = `rule-${job.kind}-${job.rule}`;
  let card = document.getElementById(id);
  if (card) return card;
  card = $("rule-tpl").content.firstElementChild.cloneNode(true);
  card.id = id;
  card.dataset.kind = job.kind;
  card.dataset.rule = job.rule;
  card.querySelector(".kind").textContent = KINDS[job.kind] || job.kind;
  card.querySelector(".name").textContent = job.rule;
  /* Grouped by kind, then by name. */
  const cards = [...$("jobs").querySelectorAll("article.rule")];
  const order = (c) => `${Object.keys(KINDS).indexOf(c.dataset.kind)}/${c.dataset.rule}`;
  const after = cards.find((c) => order(c) > order(card));
  $("jobs").insertBefore(card, after || null);
  return card;
}

function jobRow(job) {
  const key = keyOf(job);
  let tr = state.rows.get(key);
  if (tr) return tr;
  tr = el("tr", null, "job");
  tr.dataset.key = key;
  tr.append(el("td", job.vm, "vm"), el("td", null, "state"), el("td", null, "progress"), el("td", null, "rate"));
  const acts = el("td", null, "actions");
  for (const [op, label] of BUTTONS) {
    if (!(KIND_OPS[job.kind] || []).includes(op)) continue;
    const b = el("button", label);
    b.type = "button";
    b.dataset.op = op;
    b.addEventListener("click", (ev) => { ev.stopPropagation(); command(op, state.jobs.get(key)); });
    acts.append(b);
  }
  tr.append(acts);
  tr.addEventListener("click", () => select(key));
  ruleCard(job).querySelector("tbody").append(tr);
  state.rows.set(key, tr);
  return tr;
}

function renderJob(job) {
  const tr = jobRow(job);
  const st = tr.querySelector(".state");
  st.replaceChildren(el("span", job.label_zh), el("small", job.label_en));
  st.className = `state ${job.state}`;
  st.dataset.state = job.state;
  st.title = job.error || "";
  const pr = tr.querySelector(".progress");
  const bar = pr.querySelector("progress") || pr.appendChild(el("progress"));
  bar.max = 100;
  bar.value = job.progress || 0;
  bar.title = `${job.progress}% ${bytes(job.bytes_done)} / ${bytes(job.bytes_total)}`;
  pr.dataset.progress = job.progress;
  tr.querySelector(".rate").textContent = job.rate_bps ? `${bytes(job.rate_bps)}/s` : "";
  for (const b of tr.querySelectorAll("button")) b.disabled = !(job.actions || []).includes(b.dataset.op);
  $("nojobs").hidden = true;
}

function dropJob(key) {
  const tr = state.rows.get(key);
  if (!tr) return;
  const card = tr.closest("article");
  tr.remove();
  state.rows.delete(key);
  state.jobs.delete(key);
  if (card && !card.querySelector("tr.job")) card.remove();
  if (state.selected === key) { state.selected = null; $("detail").hidden = true; }
}

function unviewed() {
  let n = 0;
  for (const j of state.jobs.values()) n += j.unviewed_errors || 0;
  $("unviewed").textContent = n;
  $("errors").classList.toggle("alert", n > 0);
}

function setJobs(list) {
  const seen = new Set();
  for (const j of list) {
    const k = keyOf(j);
    seen.add(k);
    state.jobs.set(k, j);
    renderJob(j);
  }
  for (const k of [...state.jobs.keys()]) if (!seen.has(k)) dropJob(k);
  $("nojobs").hidden = state.jobs.size > 0;
  unviewed();
}

/* ---- the event stream ---- */

function onEvent(msg) {
  if (Array.isArray(msg.jobs)) { setJobs(msg.jobs); return; }
  if (!msg.job) return;
  const k = keyOf(msg.job);
  if (msg.event === "deleted") { dropJob(k); unviewed(); return; }
  const before = state.jobs.get(k);
  state.jobs.set(k, msg.job);
  renderJob(msg.job);
  unviewed();
  if (k === state.selected) {
    trafficTick(msg.job);
    if (msg.event === "state" || (before && before.state !== msg.job.state)) loadDetail(k);
  }
}

/* /api/v1/events read with fetch, so that the token goes in a header
 * (EventSource cannot send one): "data: JSON" lines, an empty line after
 * each event, ": keepalive" comments.  Reconnects after a second when the
 * stream ends. */
async function connect() {
  if (state.events) state.events.abort();
  const ctrl = new AbortController();
  state.events = ctrl;
  const live = (up, text) => { $("conn").textContent = text; $("conn").className = `conn ${up ? "up" : "down"}`; };
  try {
    const r = await fetch(`${API}events`, { headers: headers(false), signal: ctrl.signal });
    if (!r.ok) {
      live(false, r.status === 401 || r.status === 403 ? "需要令牌 token needed" : `HTTP ${r.status}`);
      if (r.status === 401 || r.status === 403) return; /* again once a token is given */
      throw new Error(`events: HTTP ${r.status}`);
    }
    live(true, "已连接 live");
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, at);
        buf = buf.slice(at + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (data) onEvent(JSON.parse(data));
      }
    }
  } catch (err) {
    if (ctrl.signal.aborted) return;
  }
  if (state.events !== ctrl) return;
  live(false, "断开 reconnecting");
  setTimeout(() => { if (state.events === ctrl) connect(); }, 1000);
}

/* ---- detail: traffic graph, restore points, log ---- */

async function select(key) {
  state.selected = key;
  for (const [k, tr] of state.rows) tr.classList.toggle("selected", k === key);
  const j = state.jobs.get(key);
  $("detail-title").textContent = `${KINDS[j.kind] || j.kind} ${j.rule} / ${j.vm}`;
  $("detail").hidden = false;
  await loadDetail(key);
}

async function loadDetail(key) {
  const j = state.jobs.get(key);
  if (!j) return;
  try {
    const [show, log] = await Promise.all([
      get("show", { rule: j.rule, vm: j.vm, kind: j.kind }),
      get("log", { rule: j.rule, vm: j.vm, kind: j.kind, limit: 50 }),
    ]);
    if (state.selected !== key) return;
    state.traffic = show.traffic || null;
    state.lastDone.set(key, j.bytes_done);
    drawTraffic();
    drawPoints((show.details && show.details.points) || []);
    const ol = $("log");
    ol.replaceChildren(...(log.log || []).map((e) => el("li", `${e.time_local || e.time} ${e.message}`, e.level)));
    ol.scrollTop = ol.scrollHeight;
  } catch (err) {
    say(err.message, true);
  }
}

function drawPoints(points) {
  $("pointsbox").hidden = points.length === 0;
  const tb = $("points").querySelector("tbody");
  tb.replaceChildren(...points.map((p) => {
    const tr = el("tr");
    const t = p.start ? new Date(p.start * 1000) : p.time_ms ? new Date(p.time_ms) : null;
    tr.append(el("td", p.point), el("td", t ? t.toLocaleString() : ""), el("td", p.mode || ""),
      el("td", bytes(p.bytes_read)), el("td", bytes(p.bytes_stored !== undefined ? p.bytes_stored : p.bytes_written)),
      el("td", p.state || "complete"));
    return tr;
  }));
}

/* Live: progress events add their bytes to the current 10-s step. */
function trafficTick(job) {
  const t = state.traffic;
  if (!t) return;
  const k = keyOf(job);
  const prev = state.lastDone.has(k) ? state.lastDone.get(k) : job.bytes_done;
  const delta = job.bytes_done >= prev ? job.bytes_done - prev : job.bytes_done;
  state.lastDone.set(k, job.bytes_done);
  const now = Date.now() / 1000;
  while (now >= t.end) { t.bytes.shift(); t.bytes.push(0); t.end += t.step_s; }
  t.bytes[t.bytes.length - 1] += delta;
  drawTraffic();
}

function drawTraffic() {
  const t = state.traffic;
  if (!t || typeof Chart === "undefined") return;
  const labels = t.bytes.map((_, i) => new Date((t.end - (t.bytes.length - i) * t.step_s) * 1000).toLocaleTimeString());
  const data = t.bytes.map((b) => b / t.step_s / 1048576);
  if (state.charts.traffic) {
    state.charts.traffic.data.labels = labels;
    state.charts.traffic.data.datasets[0].data = data;
    state.charts.traffic.update("none");
    return;
  }
  state.charts.traffic = new Chart($("traffic"), {
    type: "bar",
    data: { labels, datasets: [{ label: "流量 traffic (MiB/s per 10 s), last hour", data, backgroundColor: "#1f6fbf", barPercentage: 1, categoryPercentage: 1, minBarLength: 0 }] },
    options: { animation: false, maintainAspectRatio: false, scales: { x: { ticks: { maxTicksLimit: 6 } }, y: { beginAtZero: true } } },
  });
}

/* ---- statistics (viewing clears the unviewed errors, seed 002) ---- */

async function showStats() {
  try {
    const s = await post("stats", {});
    state.stats = s;
    $("stats").hidden = false;
    const rules = s.rules || [];
    const names = rules.map((r) => `${r.rule} (${r.kind})`);
    const succ = rules.map((r) => r.successes), fail = rules.map((r) => r.failures);
    const totS = succ.reduce((a, b) => a + b, 0), totF = fail.reduce((a, b) => a + b, 0);
    if (typeof Chart !== "undefined") {
      for (const c of ["bar", "pie"]) if (state.charts[c]) state.charts[c].destroy();
      state.charts.bar = new Chart($("bar"), {
        type: "bar",
        data: { labels: names, datasets: [{ label: "成功 successes", data: succ, backgroundColor: "#2e7d32" },
          { label: "失败 failures", data: fail, backgroundColor: "#c62828" }] },
        options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
      });
      state.charts.pie = new Chart($("pie"), {
        type: "pie",
        data: { labels: ["成功 successes", "失败 failures"], datasets: [{ data: [totS, totF], backgroundColor: ["#2e7d32", "#c62828"] }] },
        options: { animation: false, maintainAspectRatio: false },
      });
    }
    const tb = $("stattable").querySelector("tbody");
    const row = (rule, vm, o) => {
      const tr = el("tr");
      tr.append(el("td", rule), el("td", vm), el("td", o.successes), el("td", o.failures), el("td", bytes(o.bytes)),
        el("td", o.unviewed_errors), el("td", o.last_error || ""));
      return tr;
    };
    tb.replaceChildren(...rules.map((r) => row(`${r.rule} (${r.kind})`, "全部 all", r)),
      ...(s.jobs || []).map((j) => row(j.rule, j.vm, j)));
    /* The counts were viewed: the jobs' own copies follow at their next event. */
    for (const j of state.jobs.values()) j.unviewed_errors = 0;
    unviewed();
  } catch (err) {
    say(err.message, true);
  }
}

/* ---- commands ---- */

async function command(op, job) {
  if (!job) return;
  const f = { rule: job.rule, vm: job.vm };
  if (["start", "stop", "delete", "run"].includes(op)) f.kind = job.kind;
  if (op === "delete" && !confirm(`删除 delete ${job.rule} / ${job.vm}?`)) return;
  if (op === "revert" || op === "failover" || op === "restore") {
    const p = prompt(`${op} ${job.rule} / ${job.vm}: 还原点 point (empty: the latest)`, "");
    if (p === null) return;
    if (p !== "") f.point = p;
    else if (op === "revert") f.point = "latest";
  }
  if (op === "restore") {
    const t = prompt("目标 target: original, new or instant", "original");
    if (t === null) return;
    f.target = t;
    if (t === "new") {
      const n = prompt("新虚机名 name of the new VM", `${job.vm}-restored`);
      if (n === null) return;
      f.name = n;
    }
  }
  try {
    const r = await post(op, f);
    const res = (r.results || []).map((x) => `${x.vm}: ${x.state_before} -> ${x.state} (${x.result})`).join("; ");
    say(`${op} ${job.rule} / ${job.vm}: ${res || "ok"}`);
  } catch (err) {
    say(err.message, true);
  }
}

/* ---- start ---- */

/* Jobs and the event stream; again whenever a token is given. */
async function load() {
  try {
    setJobs((await get("jobs")).jobs || []);
  } catch (err) {
    say(err.message, true);
  }
  connect();
}

function init() {
  $("token").value = state.token;
  $("tokenform").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("vmferry-token", state.token);
    say(state.token ? "令牌已设置 token set" : "令牌已清除 token cleared");
    if (state.token && (state.jobs.size === 0 || !$("conn").classList.contains("up"))) load();
  });
  $("errors").addEventListener("click", showStats);
  load();
}

document.addEventListener("DOMContentLoaded", init);
